// Go's side of ivy's comparison suite: the same workloads as the Rust binaries
// (see ../bench-common/src/lib.rs for the command line and the RESULT line format),
// written the way Go programs are usually written: goroutines, channels,
// sync.WaitGroup, sync.Mutex, time.Sleep, net.Listen with a goroutine per
// connection. Standard library only.
//
//	go build -o ../target/go-bench . && ../target/go-bench skynet --n 1000000
package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

type params struct {
	workload string
	n        uint64
	workers  int
	warmup   bool
	port     int
}

type workload struct {
	defaultN uint64
	run      func(p params) error
}

var workloads = map[string]workload{
	"switch":           {2_000_000, switchBench},
	"spawn_join":       {1_000_000, spawnJoin},
	"skynet":           {1_000_000, skynet},
	"timers":           {1_000_000, timers},
	"idle_memory":      {100_000, idleMemory},
	"chan_pingpong":    {200_000, chanPingPong},
	"mpmc_bounded":     {2_000_000, mpmcBounded},
	"mutex_contention": {2_000_000, mutexContention},
	"semaphore":        {1_000_000, semaphore},
	"tcp_echo":         {0, tcpEcho},
	"http_hello":       {0, httpHello},
}

func main() {
	args := os.Args[1:]
	if len(args) > 0 && args[0] == "--list" {
		names := make([]string, 0, len(workloads))
		for k := range workloads {
			names = append(names, k)
		}
		sort.Strings(names)
		fmt.Println(strings.Join(names, "\n"))
		return
	}
	if len(args) == 0 {
		usage()
	}
	w, ok := workloads[args[0]]
	if !ok {
		usage()
	}
	p := params{workload: args[0], n: w.defaultN, workers: runtime.NumCPU(), warmup: true}
	for i := 1; i < len(args); i++ {
		switch args[i] {
		case "--n", "--workers", "--port":
			if i+1 >= len(args) {
				usage()
			}
			v, err := strconv.ParseUint(args[i+1], 10, 64)
			if err != nil {
				usage()
			}
			switch args[i] {
			case "--n":
				p.n = v
			case "--workers":
				p.workers = int(v)
			default:
				p.port = int(v)
			}
			i++
		case "--no-warmup":
			p.warmup = false
		default:
			usage()
		}
	}
	runtime.GOMAXPROCS(p.workers)
	if err := w.run(p); err != nil {
		fail(p, "all", "-", err.Error())
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: go-bench <workload> [--n N] [--workers W] [--port P] [--no-warmup]")
	os.Exit(2)
}

func report(p params, metric string, value float64, unit string, check string) {
	line := fmt.Sprintf("RESULT workload=%s system=go metric=%s value=%.6f unit=%s n=%d workers=%d",
		p.workload, metric, value, unit, p.n, p.workers)
	if check != "" {
		line += " check=" + check
	}
	fmt.Println(line)
}

func fail(p params, metric, unit, msg string) {
	fmt.Printf("RESULT workload=%s system=go metric=%s status=fail value=nan unit=%s n=%d workers=%d error=%s\n",
		p.workload, metric, unit, p.n, p.workers, strings.ReplaceAll(msg, "\n", " "))
}

func nsPer(d time.Duration, ops uint64) float64 { return float64(d.Nanoseconds()) / float64(max1(ops)) }
func ms(d time.Duration) float64                { return float64(d.Nanoseconds()) / 1e6 }
func max1(x uint64) uint64 {
	if x == 0 {
		return 1
	}
	return x
}

// rssBytes reads VmRSS from /proc/self/status, as every other system does.
func rssBytes(field string) uint64 {
	b, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, field+":") {
			f := strings.Fields(line[len(field)+1:])
			kb, _ := strconv.ParseUint(f[0], 10, 64)
			return kb * 1024
		}
	}
	return 0
}

// splitmix64 and timerMs are bench-common's, bit for bit.
func splitmix64(x uint64) uint64 {
	z := x + 0x9E3779B97F4A7C15
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	return z ^ (z >> 31)
}

func timerMs(i, maxMs uint64) uint64 { return 1 + splitmix64(42+i)%maxMs }

// switch: two goroutines on ONE P (GOMAXPROCS=1) calling Gosched n/2 times each.
func switchBench(p params) error {
	runtime.GOMAXPROCS(1)
	round := func(n uint64) time.Duration {
		var wg sync.WaitGroup
		start := time.Now()
		for k := 0; k < 2; k++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := uint64(0); i < n/2; i++ {
					runtime.Gosched()
				}
			}()
		}
		wg.Wait()
		return time.Since(start)
	}
	if p.warmup {
		round(p.n / 10)
	}
	d := round(p.n)
	report(p, "ns_per_switch", nsPer(d, p.n/2*2), "ns", "")
	return nil
}

// spawn_join: n goroutines, each storing its id; WaitGroup for the join.
func spawnJoin(p params) error {
	round := func(n uint64) (time.Duration, error) {
		results := make([]uint64, n)
		var wg sync.WaitGroup
		start := time.Now()
		wg.Add(int(n))
		for i := uint64(0); i < n; i++ {
			go func(i uint64) {
				results[i] = i
				wg.Done()
			}(i)
		}
		wg.Wait()
		var sum uint64
		for _, v := range results {
			sum += v
		}
		d := time.Since(start)
		if sum != n*(n-1)/2 {
			return d, fmt.Errorf("wrong spawn_join sum %d", sum)
		}
		return d, nil
	}
	if p.warmup {
		if _, err := round(p.n / 10); err != nil {
			return err
		}
	}
	d, err := round(p.n)
	if err != nil {
		return err
	}
	report(p, "ns_per_task", nsPer(d, p.n), "ns", "")
	return nil
}

// skynet: the classic Go version: every node sends its sum on its parent's channel.
func skynetNode(out chan<- uint64, num, size, div uint64) {
	if size == 1 {
		out <- num
		return
	}
	sub := size / div
	ch := make(chan uint64, div)
	for i := uint64(0); i < div; i++ {
		go skynetNode(ch, num+i*sub, sub, div)
	}
	var sum uint64
	for i := uint64(0); i < div; i++ {
		sum += <-ch
	}
	out <- sum
}

func skynet(p params) error {
	round := func(n uint64) (uint64, time.Duration, error) {
		m := n
		for m > 1 && m%10 == 0 {
			m /= 10
		}
		if m != 1 || n < 10 {
			return 0, 0, fmt.Errorf("skynet size must be a power of 10, got %d", n)
		}
		start := time.Now()
		out := make(chan uint64, 1)
		go skynetNode(out, 0, n, 10)
		sum := <-out
		d := time.Since(start)
		if sum != n*(n-1)/2 {
			return sum, d, fmt.Errorf("WRONG SKYNET SUM: got %d, expected %d", sum, n*(n-1)/2)
		}
		return sum, d, nil
	}
	if p.warmup {
		if _, _, err := round(p.n / 10); err != nil {
			return err
		}
	}
	sum, d, err := round(p.n)
	if err != nil {
		return err
	}
	report(p, "total_ms", ms(d), "ms", strconv.FormatUint(sum, 10))
	return nil
}

// timers: n goroutines sleeping 1..=1000 ms (splitmix64, seed 42), all awaited.
func timers(p params) error {
	round := func(n, maxMs uint64) (time.Duration, uint64) {
		var done uint64
		var wg sync.WaitGroup
		start := time.Now()
		wg.Add(int(n))
		for i := uint64(0); i < n; i++ {
			d := time.Duration(timerMs(i, maxMs)) * time.Millisecond
			go func() {
				time.Sleep(d)
				atomic.AddUint64(&done, 1)
				wg.Done()
			}()
		}
		wg.Wait()
		return time.Since(start), atomic.LoadUint64(&done)
	}
	if p.warmup {
		round(p.n/10, 10)
	}
	var longest uint64
	for i := uint64(0); i < p.n; i++ {
		if t := timerMs(i, 1000); t > longest {
			longest = t
		}
	}
	d, done := round(p.n, 1000)
	if done != p.n {
		return fmt.Errorf("only %d of %d sleeps completed", done, p.n)
	}
	check := strconv.FormatUint(done, 10)
	report(p, "total_ms", ms(d), "ms", check)
	report(p, "overhead_ms", ms(d)-float64(longest), "ms", check)
	report(p, "peak_rss", float64(rssBytes("VmHWM"))/(1<<20), "MiB", check)
	return nil
}

// idle_memory: RSS growth per goroutine parked in a long sleep.
func idleMemory(p params) error {
	var started int64
	before := rssBytes("VmRSS")
	for i := uint64(0); i < p.n; i++ {
		go func() {
			atomic.AddInt64(&started, 1)
			time.Sleep(time.Hour)
		}()
	}
	for uint64(atomic.LoadInt64(&started)) < p.n {
		time.Sleep(time.Millisecond)
	}
	after := rssBytes("VmRSS")
	report(p, "bytes_per_task", float64(after-before)/float64(p.n), "bytes", "")
	return nil
}

// chan_pingpong: two goroutines bouncing a value over two channels (capacity 1):
// ns per round trip, all Ps.
func chanPingPong(p params) error {
	round := func(n uint64) time.Duration {
		ping, pong := make(chan uint64, 1), make(chan uint64, 1)
		go func() {
			for v := range ping {
				pong <- v + 1
			}
			close(pong)
		}()
		start := time.Now()
		for i := uint64(0); i < n; i++ {
			ping <- i
			<-pong
		}
		d := time.Since(start)
		close(ping)
		return d
	}
	if p.warmup {
		round(p.n / 10)
	}
	d := round(p.n)
	report(p, "ns_per_roundtrip", nsPer(d, p.n), "ns", "")
	return nil
}

// The sync workloads' shape, shared by every system: 4 producers and 4
// consumers over one queue of capacity 1024; 64 tasks sharing one mutex.
const (
	mpmcProducers = 4
	mpmcConsumers = 4
	mpmcCapacity  = 1024
	mutexTasks    = 64
	semTasks      = 64 // bench-common's SEM_TASKS
	semPermits    = 8  // and SEM_PERMITS
)

// mpmc_bounded: n items through a buffered channel, ns per item.
func mpmcBounded(p params) error {
	round := func(n uint64) (time.Duration, error) {
		ch := make(chan uint64, mpmcCapacity)
		var prod, cons sync.WaitGroup
		var total uint64
		start := time.Now()
		for k := uint64(0); k < mpmcProducers; k++ {
			prod.Add(1)
			go func(k uint64) {
				defer prod.Done()
				for i := k; i < n; i += mpmcProducers {
					ch <- i
				}
			}(k)
		}
		for k := 0; k < mpmcConsumers; k++ {
			cons.Add(1)
			go func() {
				defer cons.Done()
				var s uint64
				for v := range ch {
					s += v
				}
				atomic.AddUint64(&total, s)
			}()
		}
		prod.Wait()
		close(ch)
		cons.Wait()
		d := time.Since(start)
		if total != n*(n-1)/2 {
			return d, fmt.Errorf("wrong mpmc sum %d", total)
		}
		return d, nil
	}
	if p.warmup {
		if _, err := round(p.n / 10); err != nil {
			return err
		}
	}
	d, err := round(p.n)
	if err != nil {
		return err
	}
	report(p, "ns_per_item", nsPer(d, p.n), "ns", "")
	return nil
}

// semaphore: 64 goroutines sharing 8 permits, each doing n/64 times
// acquire; runtime.Gosched(); release. Go's standard library has no semaphore
// (golang.org/x/sync/semaphore is not vendored: standard library only), so it
// is the usual idiom: a buffered channel of 8, a send acquires, a receive
// releases.
func semaphore(p params) error {
	round := func(n uint64) (time.Duration, error) {
		sem := make(chan struct{}, semPermits)
		var inside, done, worst int64
		var wg sync.WaitGroup
		per := n / semTasks
		start := time.Now()
		for k := 0; k < semTasks; k++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := uint64(0); i < per; i++ {
					sem <- struct{}{}
					if now := atomic.AddInt64(&inside, 1); now > semPermits {
						atomic.StoreInt64(&worst, now)
					}
					runtime.Gosched()
					atomic.AddInt64(&inside, -1)
					atomic.AddInt64(&done, 1)
					<-sem
				}
			}()
		}
		wg.Wait()
		d := time.Since(start)
		if worst != 0 {
			return d, fmt.Errorf("%d holders of %d permits", worst, semPermits)
		}
		if uint64(done) != per*semTasks || len(sem) != 0 {
			return d, fmt.Errorf("wrong count %d or %d permits held", done, len(sem))
		}
		return d, nil
	}
	if p.warmup {
		if _, err := round(p.n / 10); err != nil {
			return err
		}
	}
	d, err := round(p.n)
	if err != nil {
		return err
	}
	report(p, "ns_per_acquire", nsPer(d, p.n/semTasks*semTasks), "ns", "")
	return nil
}

// mutex_contention: 64 goroutines each doing n/64 lock; counter++; unlock.
func mutexContention(p params) error {
	round := func(n uint64) (time.Duration, error) {
		var mu sync.Mutex
		var counter uint64
		var wg sync.WaitGroup
		per := n / mutexTasks
		start := time.Now()
		for k := 0; k < mutexTasks; k++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := uint64(0); i < per; i++ {
					mu.Lock()
					counter++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		d := time.Since(start)
		if counter != per*mutexTasks {
			return d, fmt.Errorf("wrong counter %d", counter)
		}
		return d, nil
	}
	if p.warmup {
		if _, err := round(p.n / 10); err != nil {
			return err
		}
	}
	d, err := round(p.n)
	if err != nil {
		return err
	}
	report(p, "ns_per_lock", nsPer(d, p.n/mutexTasks*mutexTasks), "ns", "")
	return nil
}

// The server workloads' buffers and HTTP response, shared by every system
// (bench-common's ECHO_BUF, HTTP_BUF, HTTP_RESPONSE).
const (
	echoBuf = 4096
	httpBuf = 4096
)

var httpResponse = []byte("HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n\r\nHello, World!")
var crlfcrlf = []byte("\r\n\r\n")

// serveForever binds 127.0.0.1:port, prints LISTENING port=<p>, then accepts
// forever, one goroutine per connection running serve (TCP_NODELAY set). It
// returns only on a listen error: the harness kills the process.
func serveForever(p params, serve func(c *net.TCPConn) error) error {
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p.port))
	if err != nil {
		return err
	}
	// os.Stdout is unbuffered: the line reaches the harness at once.
	fmt.Printf("LISTENING port=%d\n", l.Addr().(*net.TCPAddr).Port)
	for {
		c, err := l.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, "go-bench: accept:", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		go func() {
			tc := c.(*net.TCPConn)
			tc.SetNoDelay(true)
			serve(tc)
			tc.Close()
		}()
	}
}

// tcp_echo: read up to 4 KiB, write back exactly that, until EOF.
func tcpEcho(p params) error {
	return serveForever(p, func(c *net.TCPConn) error {
		buf := make([]byte, echoBuf)
		for {
			n, err := c.Read(buf)
			if n > 0 {
				if _, werr := c.Write(buf[:n]); werr != nil {
					return werr
				}
			}
			if err != nil {
				return err // io.EOF included
			}
		}
	})
}

// httpRequests counts the complete requests (each ending in \r\n\r\n) at the
// start of buf and the bytes they take: bench-common's http_requests.
func httpRequests(buf []byte) (count, used int) {
	for {
		i := bytes.Index(buf[used:], crlfcrlf)
		if i < 0 {
			return
		}
		count++
		used += i + 4
	}
}

// http_hello: the suite's minimal keep-alive handling, one fixed response per
// complete request in the buffer (not net/http: the same work as the others).
func httpHello(p params) error {
	return serveForever(p, func(c *net.TCPConn) error {
		buf := make([]byte, httpBuf)
		var out []byte
		filled := 0
		for filled < len(buf) {
			n, err := c.Read(buf[filled:])
			filled += n
			if count, used := httpRequests(buf[:filled]); count > 0 {
				out = out[:0]
				for k := 0; k < count; k++ {
					out = append(out, httpResponse...)
				}
				if _, werr := c.Write(out); werr != nil {
					return werr
				}
				filled = copy(buf, buf[used:filled])
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
}
