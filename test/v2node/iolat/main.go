// Command iolat is the load of the v2 node's disk-sharing checks (test/v2node/vm/share.sh):
// it runs inside a busybox container, from the assets disk, and does O_DIRECT I/O on a
// file that already holds data, so that every byte reaches the disk and no page cache
// or block allocation blurs what is measured.
//
//	iolat read -file F -for 30s -every 20ms   4 KiB reads at random aligned offsets, one
//	                                          every -every; prints the latency percentiles
//	iolat write -file F -for 30s -bs 128KiB -depth 4
//	                                          writes as fast as the disk takes them, -depth
//	                                          at a time; prints the bytes written
package main

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// align is the buffer and offset alignment O_DIRECT needs on every disk here.
const align = 4096

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	file := fs.String("file", "", "the file to read or write (it must exist and hold data)")
	duration := fs.Duration("for", 30*time.Second, "how long to run")
	every := fs.Duration("every", 20*time.Millisecond, "read: one read this often (a reader with think time, so its io.pressure follows its latency)")
	blockSize := fs.Int("bs", 128<<10, "write: bytes per write, a multiple of 4096")
	depth := fs.Int("depth", 4, "write: writes in flight")
	if err := fs.Parse(os.Args[2:]); err != nil || *file == "" {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "read":
		err = read(*file, *duration, *every)
	case "write":
		if *blockSize <= 0 || *blockSize%align != 0 || *depth <= 0 {
			err = fmt.Errorf("-bs must be a positive multiple of %d and -depth positive", align)
			break
		}
		err = write(*file, *duration, *blockSize, *depth)
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "iolat:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: iolat read|write -file F [-for D] [-every D] [-bs N] [-depth N]")
	os.Exit(2)
}

// alignedBuffer returns n bytes whose address is a multiple of align.
func alignedBuffer(n int) []byte {
	b := make([]byte, n+align)
	off := int(uintptr(unsafe.Pointer(&b[0])) % align)
	if off != 0 {
		off = align - off
	}
	return b[off : off+n]
}

// openDirect opens path with O_DIRECT and returns it with its size in whole blocks of n.
func openDirect(path string, flags, n int) (*os.File, int64, error) {
	f, err := os.OpenFile(path, flags|syscall.O_DIRECT, 0)
	if err != nil {
		return nil, 0, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	blocks := st.Size() / int64(n)
	if blocks == 0 {
		f.Close()
		return nil, 0, fmt.Errorf("%s: %d bytes, less than one block of %d", path, st.Size(), n)
	}
	return f, blocks, nil
}

// read does one 4 KiB read every `every` (or right after the previous one when it was
// slower) and prints "reads N p50_us A p99_us B max_us C".
func read(path string, duration, every time.Duration) error {
	f, blocks, err := openDirect(path, os.O_RDONLY, align)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := alignedBuffer(align)
	var latencies []time.Duration
	end := time.Now().Add(duration)
	next := time.Now()
	for time.Now().Before(end) {
		if d := time.Until(next); d > 0 {
			time.Sleep(d)
		}
		next = next.Add(every)
		off := rand.Int64N(blocks) * align
		t := time.Now()
		if _, err := f.ReadAt(buf, off); err != nil {
			return fmt.Errorf("read at %d: %w", off, err)
		}
		latencies = append(latencies, time.Since(t))
	}
	slices.Sort(latencies)
	fmt.Printf("reads %d p50_us %d p99_us %d max_us %d\n", len(latencies),
		percentile(latencies, 50).Microseconds(), percentile(latencies, 99).Microseconds(),
		latencies[len(latencies)-1].Microseconds())
	return nil
}

// percentile is the nearest-rank percentile p of the sorted durations.
func percentile(sorted []time.Duration, p int) time.Duration {
	rank := (len(sorted)*p + 99) / 100 // ceil(len × p / 100)
	return sorted[max(rank, 1)-1]
}

// write keeps depth writes of bs bytes in flight, walking the file in order and
// wrapping at its end, and prints "bytes N seconds S".
func write(path string, duration time.Duration, bs, depth int) error {
	f, blocks, err := openDirect(path, os.O_WRONLY, bs)
	if err != nil {
		return err
	}
	defer f.Close()
	var next, written atomic.Int64
	var failed atomic.Pointer[error]
	start := time.Now()
	end := start.Add(duration)
	var wg sync.WaitGroup
	for range depth {
		wg.Go(func() {
			// One thread per writer goroutine: its own io_context, so one BFQ queue
			// each, whose requests BFQ can keep in order (with -depth 1, the writer's
			// only queue: BFQ then serves the writers by their cgroups' weights).
			runtime.LockOSThread()
			buf := alignedBuffer(bs)
			for i := range buf {
				buf[i] = byte(i*7 + 1)
			}
			for time.Now().Before(end) && failed.Load() == nil {
				off := (next.Add(1) - 1) % blocks * int64(bs)
				if _, err := f.WriteAt(buf, off); err != nil {
					err = fmt.Errorf("write at %d: %w", off, err)
					failed.CompareAndSwap(nil, &err)
					return
				}
				written.Add(int64(bs))
			}
		})
	}
	wg.Wait()
	if e := failed.Load(); e != nil {
		return *e
	}
	fmt.Printf("bytes %d seconds %.1f\n", written.Load(), time.Since(start).Seconds())
	return nil
}
