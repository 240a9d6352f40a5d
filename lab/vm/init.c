/* The VM lab's /init: mount what the run needs, check that the kernel's device-private test
 * driver is there, run the commands in /etc/vm-command one after the other, then the kernel's
 * own hmm-tests when the initramfs has them, and power off. Everything the host wants back goes
 * to /out, a 9p share of the host's output folder:
 *   /out/command-N.exit     command N's exit status, written as it ends;
 *   /out/exit-status        the first non-zero of them (0 when all passed), written before
 *                           hmm-tests, which may hang, so the host can tell "failed" from
 *                           "never finished";
 *   /out/hmm-tests.tap      hmm-tests' TAP output, /out/hmm-tests.exit its exit status.
 * (hmm-tests' assertion messages, on its stderr, go to the same file.)
 * With /etc/vm-expect-vsvm (lab/vm/run --vsvm) the virtual SVM GPU must have a render node;
 * without one the command does not run and the exit status is 7.
 * Console lines start with "svmconf-vm:" so the host's log can be searched for them.
 * Built static (gcc -static) by lab/vm/run: the initramfs has no libc. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* hmm-tests is a reference run: a hang there must not keep the results from the host. */
#define HMM_TESTS_LIMIT_S 900

static void say(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	printf("svmconf-vm: ");
	vprintf(fmt, ap);
	printf("\n");
	fflush(stdout);
	va_end(ap);
}

static double uptime(void)
{
	double up = -1;
	FILE *f = fopen("/proc/uptime", "r");
	if (f) {
		if (fscanf(f, "%lf", &up) != 1)
			up = -1;
		fclose(f);
	}
	return up;
}

static double now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

static void mount_or_say(const char *src, const char *dir, const char *type, const char *opts)
{
	mkdir(dir, 0755);
	if (mount(src, dir, type, 0, opts) != 0)
		say("mount %s on %s: %s", type, dir, strerror(errno));
}

static void write_file(const char *path, const char *fmt, ...)
{
	va_list ap;
	FILE *f = fopen(path, "w");
	if (!f) {
		say("cannot write %s: %s", path, strerror(errno));
		return;
	}
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	fflush(f);
	fsync(fileno(f));
	fclose(f);
}

/* Runs argv with stdout and stderr to `out` (NULL: the console); a limit > 0 kills it past that many
 * seconds. Returns the exit status, 128+N for death by signal N, 127 when it could not run. */
static int run(char **argv, const char *out, int limit)
{
	pid_t pid = fork();
	if (pid == 0) {
		setpgid(0, 0);
		if (out) {
			int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
			if (fd >= 0) {
				dup2(fd, 1);
				dup2(fd, 2);
			}
		}
		execv(argv[0], argv);
		say("cannot run %s: %s", argv[0], strerror(errno));
		_exit(127);
	}
	if (pid < 0)
		return 127;
	pid_t watchdog = -1;
	if (limit > 0) {
		watchdog = fork();
		if (watchdog == 0) {
			sleep(limit);
			say("%s still running after %d s: killing it", argv[0], limit);
			kill(-pid, SIGKILL);
			_exit(0);
		}
	}
	int status = 0;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (watchdog > 0) {
		kill(watchdog, SIGKILL);
		waitpid(watchdog, NULL, 0);
	}
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return WEXITSTATUS(status);
}

/* The render node whose device is the virtual SVM GPU (modalias platform:vsvm), into node;
 * 0 when there is none. */
static int find_vsvm(char *node, size_t len)
{
	DIR *d = opendir("/sys/class/drm");
	struct dirent *e;
	int found = 0;

	if (!d)
		return 0;
	while (!found && (e = readdir(d))) {
		char path[320], alias[64] = "";
		FILE *f;

		if (strncmp(e->d_name, "renderD", 7))
			continue;
		snprintf(path, sizeof(path), "/sys/class/drm/%s/device/modalias", e->d_name);
		f = fopen(path, "r");
		if (!f)
			continue;
		if (fgets(alias, sizeof(alias), f) && !strcmp(alias, "platform:vsvm\n")) {
			snprintf(node, len, "/dev/dri/%s", e->d_name);
			found = 1;
		}
		fclose(f);
	}
	closedir(d);
	return found;
}

/* /etc/vm-command: the commands' argv, each argument ended by a NUL byte, commands separated
 * by an argument "---". Fills cmds with up to max argv arrays; returns how many. */
#define MAX_COMMANDS 16
static int read_commands(char **cmds[], int max)
{
	static char buf[65536];
	static char *argv[512];
	int fd = open("/etc/vm-command", O_RDONLY);
	ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
	int argc = 0, count = 0;

	if (fd >= 0)
		close(fd);
	if (n <= 0)
		return 0;
	cmds[count++] = &argv[0];
	for (char *p = buf; p < buf + n && argc < 510; p += strlen(p) + 1) {
		if (!strcmp(p, "---") && count < max) {
			argv[argc++] = NULL;
			cmds[count++] = &argv[argc];
			continue;
		}
		argv[argc++] = p;
	}
	argv[argc] = NULL;
	/* An empty last command (a trailing "---") is none. */
	if (count > 1 && !cmds[count - 1][0])
		count--;
	return count;
}

static void power_off(void)
{
	sync();
	umount("/out");
	reboot(RB_POWER_OFF);
	/* Only reached when power-off failed: panic=-1 and -no-reboot still end the VM. */
	_exit(0);
}

int main(void)
{
	mount_or_say("devtmpfs", "/dev", "devtmpfs", NULL);
	int console = open("/dev/console", O_RDWR);
	if (console >= 0) {
		dup2(console, 0);
		dup2(console, 1);
		dup2(console, 2);
	}
	mount_or_say("proc", "/proc", "proc", NULL);
	mount_or_say("sysfs", "/sys", "sysfs", NULL);
	mount_or_say("debugfs", "/sys/kernel/debug", "debugfs", NULL);
	mount_or_say("tmpfs", "/tmp", "tmpfs", NULL);
	mount_or_say("out", "/out", "9p", "trans=virtio,version=9p2000.L,msize=262144");
	setenv("PATH", "/bin", 1);
	setenv("HOME", "/tmp", 1);
	setenv("TERM", "dumb", 1);
	/* lab/vm/run's command on the host, which svmconf puts before its repro lines. */
	FILE *prefix = fopen("/etc/vm-repro-prefix", "r");
	if (prefix) {
		static char text[4096];
		size_t n = fread(text, 1, sizeof(text) - 1, prefix);
		text[n] = 0;
		fclose(prefix);
		setenv("SVMCONF_REPRO_PREFIX", text, 1);
	}
	chdir("/");

	say("booted in %.2f s (kernel uptime at /init)", uptime());
	int missing = 0;
	for (int i = 0; i < 2; i++) {
		char path[32];
		struct stat st;
		snprintf(path, sizeof(path), "/dev/hmm_dmirror%d", i);
		if (stat(path, &st) == 0 && S_ISCHR(st.st_mode)) {
			say("%s: character device %u:%u", path, major(st.st_rdev), minor(st.st_rdev));
		} else {
			say("%s: missing (%s): the kernel lacks CONFIG_TEST_HMM", path,
			    strerror(errno));
			missing = 1;
		}
	}

	int no_vsvm = 0;
	if (access("/etc/vm-expect-vsvm", F_OK) == 0) {
		char node[300];
		if (find_vsvm(node, sizeof(node))) {
			say("%s: the virtual SVM GPU's render node", node);
		} else {
			say("vsvm: no render node whose device is platform:vsvm: the driver did not load "
			    "(its probe messages are in the kernel log above)");
			no_vsvm = 1;
		}
	}

	char **cmds[MAX_COMMANDS];
	int ncmds = read_commands(cmds, MAX_COMMANDS);
	int status = 0;
	if (missing) {
		status = 3;
	} else if (no_vsvm) {
		status = 7;
	} else if (!ncmds || !cmds[0][0]) {
		say("no command in /etc/vm-command");
		status = 2;
	} else {
		/* Every command runs; the lab's status is the first that was not 0. Each one's
		 * own goes to /out/command-N.exit as soon as it ends. */
		for (int i = 0; i < ncmds; i++) {
			char path[64];
			say("running command %d of %d: %s", i + 1, ncmds, cmds[i][0]);
			double t0 = now();
			int s = run(cmds[i], NULL, 0);
			say("command %d exited %d after %.1f s", i + 1, s, now() - t0);
			snprintf(path, sizeof(path), "/out/command-%d.exit", i + 1);
			write_file(path, "%d\n", s);
			if (s && !status)
				status = s;
		}
	}
	write_file("/out/exit-status", "%d\n", status);
	sync();

	char *hmm[] = { "/bin/hmm-tests", NULL };
	if (!missing && access(hmm[0], X_OK) == 0) {
		say("running hmm-tests (the kernel's selftest), TAP to hmm-tests.tap");
		double t0 = now();
		int s = run(hmm, "/out/hmm-tests.tap", HMM_TESTS_LIMIT_S);
		say("hmm-tests exited %d after %.1f s", s, now() - t0);
		write_file("/out/hmm-tests.exit", "%d\n", s);
	}
	power_off();
	return 0;
}
