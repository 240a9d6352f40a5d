// SPDX-License-Identifier: MIT
//
// Reproducer for the finding of lab/vm/README.md ("On the virtual SVM GPU"): with drm_pagemap
// and TTM as xe and the series use them, TTM evicts SVM BOs in the order they were *migrated*,
// not the order the GPU used them. A GPU access to a range whose pages are already in VRAM and
// mapped never reaches TTM (no fault, no ttm_bo_move_to_lru_tail), so an allocation the GPU
// keeps using is evicted before one it has not touched since.
//
//   gcc -static -O1 -I lab/vm/findings/include -o vsvm_lru_order lab/vm/findings/vsvm_lru_order.c
//   lab/vm/run --vsvm --no-hmm-tests --binary vsvm_lru_order -- vsvm_lru_order
//
// Three allocations of a quarter of VRAM each are written by the GPU (each migrates to VRAM in
// its own SVM BOs), the first is read by the GPU again, and a VRAM buffer object is created that
// fits only if one allocation's worth of SVM BOs goes. Prints where each allocation's pages are:
// least recently used order would evict allocation 1; exit 1 when allocation 0 went instead (the
// finding), 0 when allocation 1 went, 2 on any other outcome or error.
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../vsvm/vsvm_drm.h"

#define PAGE 4096UL

static int fd;

static void xioctl(unsigned long req, void *arg, const char *what)
{
	if (ioctl(fd, req, arg)) {
		fprintf(stderr, "%s: %s\n", what, strerror(errno));
		exit(2);
	}
}

/* An allocation aligned to 2 MiB, so its ranges are 2 MiB chunks. */
static uint8_t *alloc(size_t size)
{
	size_t align = 2UL << 20;
	uint8_t *p = mmap(NULL, size + align, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED) {
		perror("mmap");
		exit(2);
	}
	return (uint8_t *)(((uintptr_t)p + align - 1) & ~(align - 1));
}

static void gpu(unsigned long req, uint8_t *addr, size_t size, void *buf, const char *what)
{
	struct drm_vsvm_access a = { .addr = (uintptr_t)addr, .size = size, .ptr = (uintptr_t)buf };

	xioctl(req, &a, what);
}

/* Pages of [addr, addr + size) whose CPU residency is VRAM. */
static unsigned long in_vram(uint8_t *addr, size_t size)
{
	static uint8_t res[1 << 16];
	struct drm_vsvm_residency r = {
		.start = (uintptr_t)addr, .npages = size / PAGE, .ptr = (uintptr_t)res,
	};

	xioctl(DRM_IOCTL_VSVM_RESIDENCY, &r, "RESIDENCY");
	return r.vram_pages;
}

int main(void)
{
	glob_t g;
	struct drm_vsvm_query q = { 0 };

	if (glob("/dev/dri/renderD*", 0, NULL, &g) || !g.gl_pathc) {
		fprintf(stderr, "no render node\n");
		return 2;
	}
	fd = open(g.gl_pathv[0], O_RDWR);
	if (fd < 0) {
		perror(g.gl_pathv[0]);
		return 2;
	}
	xioctl(DRM_IOCTL_VSVM_QUERY, &q, "QUERY");
	size_t size = q.vram_total / 4;
	uint8_t *buf = malloc(size), *a[3];

	memset(buf, 0x5a, size);
	for (int i = 0; i < 3; i++) {
		a[i] = alloc(size);
		gpu(DRM_IOCTL_VSVM_WRITE, a[i], size, buf, "WRITE");
		printf("allocation %d written by the GPU: %lu of %lu pages in VRAM\n", i,
		       in_vram(a[i], size), size / PAGE);
	}
	gpu(DRM_IOCTL_VSVM_READ, a[0], size, buf, "READ");
	printf("allocation 0 read by the GPU again: the most recently used\n");

	xioctl(DRM_IOCTL_VSVM_QUERY, &q, "QUERY");
	struct drm_vsvm_create_bo bo = { .size = q.vram_total - q.vram_used + size };
	xioctl(DRM_IOCTL_VSVM_CREATE_BO, &bo, "CREATE_BO");
	printf("a VRAM buffer object of %llu bytes: one allocation's worth must go\n",
	       (unsigned long long)bo.size);

	unsigned long left[3];
	for (int i = 0; i < 3; i++) {
		left[i] = in_vram(a[i], size);
		printf("allocation %d: %lu of %lu pages in VRAM\n", i, left[i], size / PAGE);
	}
	if (!left[0] && left[1] && left[2]) {
		printf("evicted: allocation 0, the least recently migrated, though the most recently used\n");
		return 1;
	}
	if (left[0] && !left[1] && left[2]) {
		printf("evicted: allocation 1, the least recently used\n");
		return 0;
	}
	printf("evicted: neither as expected\n");
	return 2;
}
