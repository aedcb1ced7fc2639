/*
 * dist/cni/podnet: the executable a container runtime execs for a podnet CNI call.
 *
 * It only forwards. When the network config on stdin names a resident service's socket
 * ("serviceSocket"), it sends the CNI_* variables, its network namespace and stdin to that service
 * (`podnet serve`, src/plugin/service.ts) and hands the service's stdout, stderr and exit code back
 * to the runtime. In every other case -- no socket named, nothing listening, the service declines
 * ("local") or dies before it has answered in full -- it execs the full plugin, podnet-plugin in
 * the same directory, with the same arguments, environment and stdin, which then does the work
 * itself with the same results and errors (ADD and DEL are idempotent, so redoing a half-done
 * request is safe).
 *
 * Why C: a Bun process needs ~9 ms and 33-45 MiB before our first line runs; this starts in well
 * under 1 ms in ~1 MiB, which is what lets a served ADD or DEL beat Go's `bridge` (README, "Design").
 * Keep it free of logic: all CNI semantics, validation and errors live in the TypeScript plugin.
 *
 * Wire format (service-protocol.ts is the other side):
 *   request:  "podnet-cni 1\n" "netns <dev>:<ino>\n" ("env NAME=value\n")* "stdin <bytes>\n" <stdin>
 *   reply:    "exit <code> <stdout bytes> <stderr bytes>\n" <stdout> <stderr>
 *          or "local <reason>\n"
 * The service closes the connection after its reply.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define FULL_PLUGIN_NAME "podnet-plugin"

/* The variables a CNI plugin reads; the service never sees the rest of our environment. */
static const char *const forwarded_variables[] = {"CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "CNI_PATH"};

struct buffer {
	char *data;
	size_t len, cap;
};

static int append(struct buffer *b, const void *data, size_t len) {
	if (b->len + len + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 4096;
		while (cap < b->len + len + 1) cap *= 2;
		char *grown = realloc(b->data, cap);
		if (!grown) return -1;
		b->data = grown;
		b->cap = cap;
	}
	memcpy(b->data + b->len, data, len);
	b->len += len;
	b->data[b->len] = '\0';
	return 0;
}

static int write_all(int fd, const char *data, size_t len) {
	while (len > 0) {
		ssize_t n = write(fd, data, len);
		if (n < 0 && errno == EINTR) continue;
		if (n <= 0) return -1;
		data += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Reads fd to its end; returns -1 on a read error (what was read stays in b). */
static int read_all(int fd, struct buffer *b) {
	char chunk[16384];
	for (;;) {
		ssize_t n = read(fd, chunk, sizeof chunk);
		if (n < 0 && errno == EINTR) continue;
		if (n < 0) return -1;
		if (n == 0) return 0;
		if (append(b, chunk, (size_t)n) < 0) return -1;
	}
}

/*
 * Replaces this process with the full plugin. stdin, already consumed here, is handed over as an
 * in-memory file holding the same bytes; with stdin == NULL the original stdin is left in place.
 */
static void run_full_plugin(char **argv, const struct buffer *stdin_bytes) {
	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
	char path[PATH_MAX + sizeof FULL_PLUGIN_NAME];
	if (n > 0) {
		self[n] = '\0';
		char *slash = strrchr(self, '/');
		if (slash) slash[1] = '\0';
		snprintf(path, sizeof path, "%s%s", self, FULL_PLUGIN_NAME);
	} else {
		snprintf(path, sizeof path, "%s", FULL_PLUGIN_NAME);
	}
	if (stdin_bytes) {
		int fd = memfd_create("podnet-cni-stdin", 0);
		if (fd < 0 || write_all(fd, stdin_bytes->data, stdin_bytes->len) < 0 || lseek(fd, 0, SEEK_SET) < 0 || dup2(fd, 0) < 0) goto failed;
		if (fd != 0) close(fd);
	}
	argv[0] = path;
	execv(path, argv);
failed:;
	/* A CNI error on stdout (spec: code 5, I/O), so the runtime reports something readable. */
	char message[PATH_MAX + 256];
	int len = snprintf(message, sizeof message, "{\"cniVersion\":\"1.1.0\",\"code\":5,\"msg\":\"podnet: cannot run the full plugin\",\"details\":\"%s: errno %d\"}\n",
			   FULL_PLUGIN_NAME, errno);
	if (len > 0) write_all(1, message, (size_t)len);
	exit(1);
}

/*
 * The value of the top-level-looking key "serviceSocket" in the config, or NULL. A plain scan, not
 * a JSON parser: a value with escapes is not forwarded, and the service itself checks that the
 * parsed config names its own socket, so a key found elsewhere in the document only costs a
 * round trip that ends in "local".
 */
static const char *service_socket(const struct buffer *conf, char *out, size_t out_size) {
	static const char key[] = "\"serviceSocket\"";
	const char *p = conf->data ? strstr(conf->data, key) : NULL;
	if (!p) return NULL;
	p += sizeof key - 1;
	while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
	if (*p++ != ':') return NULL;
	while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
	if (*p++ != '"' || *p != '/') return NULL;
	size_t len = 0;
	while (p[len] && p[len] != '"' && p[len] != '\\') len++;
	if (p[len] != '"' || len >= out_size) return NULL;
	memcpy(out, p, len);
	out[len] = '\0';
	return out;
}

/* Builds the request; -1 if something cannot be carried (the full plugin then handles it). */
static int build_request(struct buffer *req, const struct buffer *stdin_bytes) {
	struct stat ns;
	if (stat("/proc/thread-self/ns/net", &ns) < 0) return -1;
	char line[128];
	int len = snprintf(line, sizeof line, "podnet-cni 1\nnetns %llu:%llu\n", (unsigned long long)ns.st_dev, (unsigned long long)ns.st_ino);
	if (append(req, line, (size_t)len) < 0) return -1;
	for (size_t i = 0; i < sizeof forwarded_variables / sizeof *forwarded_variables; i++) {
		const char *value = getenv(forwarded_variables[i]);
		if (!value) continue;
		if (strchr(value, '\n')) return -1;
		if (append(req, "env ", 4) < 0 || append(req, forwarded_variables[i], strlen(forwarded_variables[i])) < 0 || append(req, "=", 1) < 0 ||
		    append(req, value, strlen(value)) < 0 || append(req, "\n", 1) < 0)
			return -1;
	}
	len = snprintf(line, sizeof line, "stdin %zu\n", stdin_bytes->len);
	if (append(req, line, (size_t)len) < 0 || append(req, stdin_bytes->data ? stdin_bytes->data : "", stdin_bytes->len) < 0) return -1;
	return 0;
}

/* Sends the request and reads the whole reply; -1 if the service could not be reached or broke off. */
static int ask_service(const char *socket_path, const struct buffer *req, struct buffer *reply) {
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	if (strlen(socket_path) >= sizeof addr.sun_path) return -1;
	strcpy(addr.sun_path, socket_path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) return -1;
	if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) goto broken;
	for (size_t sent = 0; sent < req->len;) {
		ssize_t n = send(fd, req->data + sent, req->len - sent, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR) continue;
		if (n <= 0) goto broken;
		sent += (size_t)n;
	}
	if (read_all(fd, reply) < 0) goto broken;
	close(fd);
	return 0;
broken:
	close(fd);
	return -1;
}

int main(int argc, char **argv) {
	/* `podnet serve …` and anything else that is not a CNI call belong to the full program. */
	if (argc > 1 || !getenv("CNI_COMMAND")) run_full_plugin(argv, NULL);

	struct buffer conf = {0};
	if (read_all(0, &conf) < 0) run_full_plugin(argv, conf.len ? &conf : NULL);

	char socket_path[sizeof ((struct sockaddr_un *)0)->sun_path];
	if (!service_socket(&conf, socket_path, sizeof socket_path)) run_full_plugin(argv, &conf);

	struct buffer req = {0}, reply = {0};
	if (build_request(&req, &conf) < 0 || ask_service(socket_path, &req, &reply) < 0) run_full_plugin(argv, &conf);

	const char *newline = reply.data ? memchr(reply.data, '\n', reply.len) : NULL;
	if (newline && newline - reply.data < 64) {
		char header[64];
		size_t header_len = (size_t)(newline - reply.data) + 1;
		memcpy(header, reply.data, header_len - 1);
		header[header_len - 1] = '\0';
		int code, used = 0;
		size_t out_len, err_len;
		if (sscanf(header, "exit %d %zu %zu%n", &code, &out_len, &err_len, &used) == 3 && used == (int)header_len - 1 &&
		    reply.len == header_len + out_len + err_len) {
			if (write_all(1, reply.data + header_len, out_len) < 0) return 1;
			if (err_len) write_all(2, reply.data + header_len + out_len, err_len);
			return code;
		}
	}
	/* "local …", or a reply cut short by a service that died: do the work here. */
	run_full_plugin(argv, &conf);
}
