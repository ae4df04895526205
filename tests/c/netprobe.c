/*
 * netprobe HOST PORT: one TCP connect; prints the outcome and exits 0 on
 * success, else with errno (capped at 100). Run inside a scope by the shim.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s IPV4 PORT\n", argv[0]);
    return 101;
  }
  struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2]))};
  if (inet_pton(AF_INET, argv[1], &sin.sin_addr) != 1) {
    fprintf(stderr, "netprobe: bad address %s\n", argv[1]);
    return 101;
  }
  int s = socket(AF_INET, SOCK_STREAM, 0);
  if (s < 0) {
    perror("netprobe: socket");
    return 101;
  }
  if (connect(s, (struct sockaddr *)&sin, sizeof sin) != 0) {
    int e = errno;
    printf("netprobe: connect failed errno=%d (%s)\n", e, strerror(e));
    fflush(stdout);
    return e > 100 ? 100 : e;
  }
  printf("netprobe: connected\n");
  close(s);
  return 0;
}
