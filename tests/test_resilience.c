/* test_resilience.c -- issue 11: every request answered by its deadline, whatever the
   providers and the daemon do (retries, colocated services, startup failures, the readiness
   probe, daemon outages, vanished providers, handshake storms, flapping state, hung exe-units, draft aging,
   capacity refusals, expiry rotation, clock skew).

   The groups live in tests/test_cluster.c beside the scheduler's own, sharing its helpers;
   this program runs them (and only them) against their own stand-in. TC_ONLY picks groups. */
#define TC_RESILIENCE 1
#include "tests/test_cluster.c"
