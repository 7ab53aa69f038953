/* The implementation file of a two-translation-unit program (tests/header_builds.sh): only
   the define and the include, as the header's top comment tells users to write it. Built as
   C and as C++, and linked with user.c built either way. */
#define YHC_IMPLEMENTATION
#include "yhc.h"
