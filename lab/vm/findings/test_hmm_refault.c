// SPDX-License-Identifier: MIT
//
// Reproducer for the Linux 6.12 HMM test driver (lib/test_hmm.c) finding of lab/vm/README.md:
// after the driver's page-table entry for a page it migrated to its device-private memory is
// invalidated while the page stays device-private, the device's next READ (or WRITE) of the
// page maps the device-private struct page itself (dmirror_do_fault has no BACKING_PAGE) and
// copies through it: "BUG: unable to handle page fault" in dmirror_do_read.
//
//   gcc -static -O1 -o test_hmm_refault test_hmm_refault.c
//   lab/vm/run --no-hmm-tests --binary test_hmm_refault -- test_hmm_refault MODE
//
// MODE says what invalidates the entry; each migrates one or more pages, invalidates, and reads:
//   mixed      none: one READ of a page not mirrored yet followed by a migrated page; the
//              driver faults in both and maps the second raw     -> oops in dmirror_do_read
//   mprotect   mprotect(PROT_READ) of the page itself          -> oops
//   below      munmap of a mapping that ends where the page begins: dmirror_do_update clears
//              one page past the end of every range               -> oops
//   gap        the same munmap, one page lower (control)          -> no oops, exit 0
//   reprotect  finding 4: mprotect(PROT_READ) of a device-private page and back to read-write,
//              then a device WRITE: hmm_range_fault hands the driver the still read-only
//              device-private entry              -> WARNING in dmirror_fault, WRITE fails EFAULT
//   neighbour  munmap of part of another anonymous mapping, which the kernel merged into one
//              VMA with the migrated one: splitting the VMA inside a 2 MiB block it covers
//              invalidates the whole block (split_huge_pmd_address), with no huge page there
//                                                                 -> oops
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

// lib/test_hmm_uapi.h
struct hmm_dmirror_cmd {
	uint64_t addr, ptr, npages, cpages, faults;
};
#define HMM_DMIRROR_READ _IOWR('H', 0x00, struct hmm_dmirror_cmd)
#define HMM_DMIRROR_WRITE _IOWR('H', 0x01, struct hmm_dmirror_cmd)
#define HMM_DMIRROR_MIGRATE_TO_DEV _IOWR('H', 0x02, struct hmm_dmirror_cmd)
#define HMM_DMIRROR_SNAPSHOT _IOWR('H', 0x04, struct hmm_dmirror_cmd)

#define PAGE 4096UL
#define BLOCK (2UL << 20)

static int fd;

static int cmd(unsigned long req, const char *name, void *addr, void *ptr, unsigned long n)
{
	struct hmm_dmirror_cmd c = { .addr = (uintptr_t)addr, .ptr = (uintptr_t)ptr, .npages = n };
	int r = ioctl(fd, req, &c);

	printf("%s of %lu pages at %p: %s (cpages %llu)\n", name, n, addr, r ? "failed" : "ok",
	       (unsigned long long)c.cpages);
	return r;
}

static void *map(void *at, size_t len)
{
	void *p = mmap(at, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | (at ? MAP_FIXED_NOREPLACE : 0), -1, 0);

	if (p == MAP_FAILED) {
		perror("mmap");
		exit(2);
	}
	return p;
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "";
	static char bounce[BLOCK];
	unsigned char state;
	char *p;
	size_t n = 1;

	setvbuf(stdout, NULL, _IONBF, 0);
	fd = open("/dev/hmm_dmirror0", O_RDWR);
	if (fd < 0) {
		perror("/dev/hmm_dmirror0");
		return 2;
	}
	if (!strcmp(mode, "neighbour")) {
		// Two anonymous mappings side by side, which the kernel merges into one VMA: the
		// lower one [top - 3 MiB, top - 1 MiB), the upper one [top - 1 MiB, top + 1 MiB),
		// top 2 MiB aligned. The upper one's first MiB (in the 2 MiB block below top)
		// migrates; then part of the lower one is unmapped at top - 1.5 MiB, inside that
		// block, so the VMA is split there.
		char *r = map(NULL, 8 * BLOCK);
		char *top = (char *)(((uintptr_t)r + 4 * BLOCK) & ~(BLOCK - 1));

		munmap(r, 8 * BLOCK);
		char *lower = map(top - 3 * BLOCK / 2, BLOCK);
		char *upper = map(top - BLOCK / 2, BLOCK);

		memset(lower, 1, BLOCK);
		memset(upper, 1, BLOCK);
		p = upper;
		n = BLOCK / 2 / PAGE;
		cmd(HMM_DMIRROR_MIGRATE_TO_DEV, "MIGRATE_TO_DEV", p, bounce, n);
		printf("munmap of the lower mapping's first 1.5 MiB: its VMA, merged with the "
		       "upper one, is split inside the block holding the device-private pages\n");
		munmap(lower, 3 * BLOCK / 4);
	} else if (!strcmp(mode, "mixed")) {
		char *q = map(NULL, 2 * PAGE);

		memset(q, 1, 2 * PAGE);
		cmd(HMM_DMIRROR_MIGRATE_TO_DEV, "MIGRATE_TO_DEV", q + PAGE, bounce, 1);
		p = q + PAGE;
		cmd(HMM_DMIRROR_SNAPSHOT, "SNAPSHOT", p, &state, 1);
		printf("the second page is %s\n",
		       (state & 0x30) == 0x20 ? "device-private" : "not device-private");
		if (cmd(HMM_DMIRROR_READ, "READ", q, bounce, 2))
			return 1;
		printf("the device read both: no oops\n");
		return 0;
	} else if (!strcmp(mode, "reprotect")) {
		p = map(NULL, PAGE);
		memset(p, 1, PAGE);
		memset(bounce, 3, PAGE);
		cmd(HMM_DMIRROR_MIGRATE_TO_DEV, "MIGRATE_TO_DEV", p, bounce, 1);
		printf("mprotect(PROT_READ) of the page, then back to read-write\n");
		mprotect(p, PAGE, PROT_READ);
		mprotect(p, PAGE, PROT_READ | PROT_WRITE);
		cmd(HMM_DMIRROR_SNAPSHOT, "SNAPSHOT", p, &state, 1);
		printf("the page is %s\n",
		       (state & 0x30) == 0x20 ? "still device-private" : "back");
		if (cmd(HMM_DMIRROR_WRITE, "WRITE", p, bounce, 1)) {
			perror("the device's WRITE");
			return 1;
		}
		printf("the device wrote it: no warning expected\n");
		return 0;
	} else if (!strcmp(mode, "mprotect")) {
		p = map(NULL, PAGE);
		memset(p, 1, PAGE);
		cmd(HMM_DMIRROR_MIGRATE_TO_DEV, "MIGRATE_TO_DEV", p, bounce, 1);
		printf("mprotect(PROT_READ) of the page\n");
		mprotect(p, PAGE, PROT_READ);
	} else if (!strcmp(mode, "below") || !strcmp(mode, "gap")) {
		size_t len = 16 * PAGE;

		p = map(NULL, PAGE);
		char *q = map(p - len, len);

		memset(p, 1, PAGE);
		memset(q, 2, len);
		cmd(HMM_DMIRROR_MIGRATE_TO_DEV, "MIGRATE_TO_DEV", p, bounce, 1);
		if (!strcmp(mode, "gap"))
			len -= PAGE;
		printf("munmap of [%p, %p): it ends %s\n", q, q + len,
		       q + len == p ? "where the page begins" : "one page below it");
		munmap(q, len);
	} else {
		fprintf(stderr, "usage: %s mixed|mprotect|reprotect|below|gap|neighbour\n", argv[0]);
		return 2;
	}
	cmd(HMM_DMIRROR_SNAPSHOT, "SNAPSHOT", p, &state, 1);
	printf("the first page is %s\n", (state & 0x30) == 0x20 ? "still device-private" : "back");
	if (cmd(HMM_DMIRROR_READ, "READ", p, bounce, n))
		return 1;
	printf("the device read it: no oops\n");
	return 0;
}
