/*
 * LD_PRELOAD for one test: getaddrinfo() of a name containing "slow" takes
 * 3 seconds, as during a resolver outage. A daemon that resolves names with
 * the C library on its event loop stalls for that long; one that does not,
 * does not notice.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netdb.h>
#include <string.h>
#include <unistd.h>

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints, struct addrinfo **res)
{
	static int (*real)(const char *, const char *, const struct addrinfo *, struct addrinfo **);
	if (real == NULL)
		*(void **)&real = dlsym(RTLD_NEXT, "getaddrinfo");
	if (node && strstr(node, "slow") && !(hints && (hints->ai_flags & AI_NUMERICHOST)))
		sleep(3);
	return real(node, service, hints, res);
}
