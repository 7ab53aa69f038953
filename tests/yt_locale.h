/* yt_locale.h -- a locale whose decimal point is ',' for the tests that check yhc never writes
   or reads numbers through the C locale: an installed one, else the one `make` compiles into
   build/locale with localedef when it can. Include after yt.h. */
#ifndef YT_LOCALE_H
#define YT_LOCALE_H
#include <locale.h>
#include <stdlib.h>
#include <string.h>

#if defined(__GNUC__) || defined(__clang__)
#  define YT_LOCALE_FN static __attribute__((unused))
#else
#  define YT_LOCALE_FN static
#endif

/* Sets LC_ALL to such a locale and returns 1; 0 (and the C locale) when there is none. */
YT_LOCALE_FN int yt_comma_locale(void) {
  static const char *names[] = {"de_DE.UTF-8", "de_DE.utf8", "fr_FR.UTF-8", "fr_FR.utf8", "ru_RU.UTF-8"};
  int pass;
  size_t i;
  for (pass = 0; pass < 2; pass++) {
    if (pass) setenv("LOCPATH", "build/locale", 1);
    for (i = 0; i < sizeof names / sizeof names[0]; i++)
      if (setlocale(LC_ALL, names[i]) && strcmp(localeconv()->decimal_point, ",") == 0) return 1;
  }
  setlocale(LC_ALL, "C");
  return 0;
}

#endif
