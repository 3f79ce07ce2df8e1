/*
 * sdnotify.h -- telling systemd what the daemon is doing.
 */
#ifndef RETENTIOND_SDNOTIFY_H
#define RETENTIOND_SDNOTIFY_H

#include <stdbool.h>
#include <stdint.h>

/*
 * systemd's notification protocol (sd_notify(3)): a datagram to
 * $NOTIFY_SOCKET. Without that variable every call does nothing.
 */
void sdnotify_ready(const char *status);
void sdnotify_reloading(void);
void sdnotify_stopping(void);
void sdnotify_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void sdnotify_watchdog(void);
/* The watchdog interval systemd asked for, 0 if none (WATCHDOG_USEC, WATCHDOG_PID). */
uint64_t sdnotify_watchdog_usec(void);

#endif
