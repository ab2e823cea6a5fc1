// Package images acquires and caches what a cell boots: a kernel (vmlinuz and
// its module tree) from a Debian linux-image package or local files, and a
// root filesystem image per (distro, docker) built with mmdebstrap from the
// host's own Debian mirror.
//
// Cache entries are content-addressed directories under the cache dir. An entry
// is complete only when its manifest (with the sha256 of every file it lists)
// has been written last, atomically; an entry without a valid manifest is
// partial or corrupt and is rebuilt. Concurrent builders of one entry (test
// packages run in parallel, several cells share a kernel) serialise on a lock
// file, so a second caller waits and then reuses the first one's result.
package images
