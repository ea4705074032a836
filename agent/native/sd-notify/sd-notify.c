/*
 * sd_notify(3) for Node: one datagram to the socket systemd names in $NOTIFY_SOCKET. Node's dgram
 * module has no AF_UNIX datagram sockets, and spawning systemd-notify for every watchdog ping costs a
 * process per ping and is sent from the wrong pid (systemd then needs NotifyAccess=all). The message is
 * sent from the agent's own pid, as Type=notify with NotifyAccess=main expects. No state kept: a socket
 * per call, closed before returning (pings are seconds apart).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <node_api.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static napi_value throw_errno(napi_env env, const char *what, int err) {
  char message[160];
  snprintf(message, sizeof message, "%s: %s", what, strerror(err));
  napi_throw_error(env, "ERR_SD_NOTIFY", message);
  return NULL;
}

/* notify(socketPath: string, message: string): void. "@name" is an abstract-namespace socket. */
static napi_value notify(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 2) {
    napi_throw_type_error(env, NULL, "notify(socketPath, message) takes two strings");
    return NULL;
  }
  struct sockaddr_un addr;
  memset(&addr, 0, sizeof addr);
  addr.sun_family = AF_UNIX;
  size_t path_len = 0;
  if (napi_get_value_string_utf8(env, argv[0], addr.sun_path, sizeof addr.sun_path, &path_len) != napi_ok) {
    napi_throw_type_error(env, NULL, "socketPath must be a string");
    return NULL;
  }
  if (path_len == 0 || path_len >= sizeof addr.sun_path - 1 || (addr.sun_path[0] != '/' && addr.sun_path[0] != '@')) {
    napi_throw_type_error(env, NULL, "socketPath must be an absolute path or @abstract, shorter than sun_path");
    return NULL;
  }
  if (addr.sun_path[0] == '@') addr.sun_path[0] = '\0';
  socklen_t addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + path_len + (addr.sun_path[0] ? 1 : 0));

  size_t msg_len = 0;
  if (napi_get_value_string_utf8(env, argv[1], NULL, 0, &msg_len) != napi_ok || msg_len == 0 || msg_len > 4096) {
    napi_throw_type_error(env, NULL, "message must be a string of 1..4096 bytes");
    return NULL;
  }
  char msg[4097];
  napi_get_value_string_utf8(env, argv[1], msg, sizeof msg, &msg_len);

  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, "socket(AF_UNIX, SOCK_DGRAM)", errno);
  ssize_t sent = sendto(fd, msg, msg_len, MSG_NOSIGNAL, (struct sockaddr *)&addr, addr_len);
  int err = errno;
  close(fd);
  if (sent < 0) return throw_errno(env, "sendto(NOTIFY_SOCKET)", err);
  return NULL;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_value fn;
  napi_create_function(env, "notify", NAPI_AUTO_LENGTH, notify, NULL, &fn);
  napi_set_named_property(env, exports, "notify", fn);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
