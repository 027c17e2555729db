/* sd_notify.h — tell a service manager (systemd, Type=notify) how the
 * process is doing, without libsystemd: one datagram per call to the
 * AF_UNIX socket named by $NOTIFY_SOCKET (a path, or '@' for Linux's
 * abstract namespace), as sd_notify(3) specifies.
 *
 * Shared by shaled and shale-router (a library of its own, shale_notify).
 * Owns nothing between calls (the socket is opened and closed per call);
 * never blocks (MSG_DONTWAIT) and never fails the caller's work: without
 * $NOTIFY_SOCKET every call is a no-op. */
#ifndef SHALE_SD_NOTIFY_H
#define SHALE_SD_NOTIFY_H

/* Send state (e.g. "READY=1", "STOPPING=1", "STATUS=text"; several
 * separated by '\n'). Returns 1 if sent, 0 when no manager asked for it
 * ($NOTIFY_SOCKET unset or empty), -errno on a send error. */
int sdn_notify(const char *state);

/* sdn_notify with a printf-formatted state. */
int sdn_notifyf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
