/* yhc.h -- Golem Network HTTP client in one C header.                   (generated TOC below)

   Send ordinary HTTP requests to HTTP servers running as services on Golem Network
   providers, as easily as to any other server; plain HTTP(S) to every other URL.

   Do this in exactly one C or C++ file:
       #define YHC_IMPLEMENTATION
       #include "yhc.h"
   and include "yhc.h" without the define everywhere else. License: MIT, at the end.
@@TOC@@
*/
#ifndef YHC_H
#define YHC_H

/* The implementation needs POSIX declarations (getaddrinfo, clock_gettime) even under
   -std=c99; this only works when yhc.h is the first include of the implementation file. */
#if defined(YHC_IMPLEMENTATION) && !defined(_POSIX_C_SOURCE) && !defined(_GNU_SOURCE)
#  define _POSIX_C_SOURCE 200809L
#endif

#include <stddef.h>
#include <stdint.h>
#include <stdarg.h>

#ifdef __cplusplus
extern "C" {
#endif

