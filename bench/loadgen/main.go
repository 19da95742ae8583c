// Command loadgen is one paced gRPC client of bench/bench_sustained.py: it sends pre-encoded
// EnhanceSignal requests open loop (call k is due at start + k/rate, whether or not earlier calls
// have answered) over one connection and prints its figures as one JSON object. Given several
// payload files it runs one such client per file, each with its own connection, in this one
// process, and prints one line per client.
//
// A compiled client, like the C# engine the server is built for: on a 2-core machine, Python
// clients would take a large share of the CPU the server is measured on.
//
// With -serve-health it is instead a Go gRPC server with only the standard health service, on a
// free loopback port that it prints: the reference for what the transport alone costs here
// (bench/bench_transport_floor.py).
package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// rawCodec passes request and response bytes through unchanged: the requests are encoded by
// the bench (Python, the project's own stubs), so this client needs no generated code.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) {
	b, ok := v.(*[]byte)
	if !ok {
		return nil, fmt.Errorf("rawCodec: unexpected %T", v)
	}
	return *b, nil
}

func (rawCodec) Unmarshal(data []byte, v any) error {
	b, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("rawCodec: unexpected %T", v)
	}
	*b = append((*b)[:0], data...)
	return nil
}

func (rawCodec) Name() string { return "proto" }

func readPayloads(path string) ([][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out [][]byte
	var size [4]byte
	for {
		if _, err := io.ReadFull(f, size[:]); err == io.EOF {
			return out, nil
		} else if err != nil {
			return nil, err
		}
		b := make([]byte, binary.LittleEndian.Uint32(size[:]))
		if _, err := io.ReadFull(f, b); err != nil {
			return nil, err
		}
		out = append(out, b)
	}
}

type report struct {
	SentMs    []float64         `json:"sent"`
	DueMs     []float64         `json:"due"`
	Errors    map[string]int    `json:"errors"`
	Details   map[string]string `json:"details"`
	LateMaxMs float64           `json:"late_max_ms"`
	LateP99Ms float64           `json:"late_p99_ms"`
	Calls     int               `json:"calls"`
	CPUs      float64           `json:"cpu_s"`
}

func main() {
	addr := flag.String("addr", "", "host:port of mem serve")
	method := flag.String("method", "/mem.v1.MemService/EnhanceSignal", "full gRPC method name")
	payloadPaths := flag.String("payloads", "", "files of length-prefixed (uint32 LE) request bytes, sent in order; several (comma-separated): one client, with its own connection, per file")
	rate := flag.Float64("rate", 250, "calls per second of each client")
	measuredFrom := flag.Int("measured-from", 0, "index of the first call whose figures are reported")
	startAt := flag.Float64("start", 0, "Unix time (s) at which call 0 (of the first client) is due")
	stagger := flag.Float64("stagger", 0, "seconds between the clients' first calls (several files)")
	timeout := flag.Duration("timeout", 5*time.Second, "deadline of each call")
	serveHealth := flag.Bool("serve-health", false, "serve the health service on a free loopback port instead")
	answered := flag.String("answered", "", "a status code name (e.g. InvalidArgument) whose calls count as answered, with their latency, not as errors")
	flag.Parse()
	if *serveHealth {
		if err := serveHealthOnly(); err != nil {
			fmt.Fprintln(os.Stderr, "loadgen:", err)
			os.Exit(1)
		}
		return
	}

	paths := strings.Split(*payloadPaths, ",")
	payloads := make([][][]byte, len(paths))
	conns := make([]*grpc.ClientConn, len(paths))
	for k, path := range paths {
		var err error
		if payloads[k], err = readPayloads(path); err != nil {
			fmt.Fprintln(os.Stderr, "loadgen:", err)
			os.Exit(1)
		}
		conns[k], err = grpc.NewClient(*addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})))
		if err != nil {
			fmt.Fprintln(os.Stderr, "loadgen:", err)
			os.Exit(1)
		}
		defer conns[k].Close()
		conns[k].Connect()
	}

	t0 := time.Unix(0, int64(*startAt*1e9))
	time.Sleep(time.Until(t0))
	cpu0 := cpuSeconds()
	reports := make([]report, len(paths))
	var wg sync.WaitGroup
	for k := range paths {
		wg.Add(1)
		go func(k int) {
			defer wg.Done()
			start := t0.Add(time.Duration(float64(k) * *stagger * 1e9))
			reports[k] = run(conns[k], *method, payloads[k], start, *rate, *measuredFrom, *timeout, *answered)
		}(k)
	}
	wg.Wait()
	cpu := (cpuSeconds() - cpu0) / float64(len(paths)) // the process's CPU, shared equally
	enc := json.NewEncoder(os.Stdout)                  // one line per client, in the files' order
	for _, r := range reports {
		r.CPUs = cpu
		if err := enc.Encode(r); err != nil {
			fmt.Fprintln(os.Stderr, "loadgen:", err)
			os.Exit(1)
		}
	}
}

// run sends payloads open loop over conn (call i due at t0 + i/rate) and reports from measuredFrom
// on; calls ending with status answered (a code name; "": none) count like OK ones.
func run(conn *grpc.ClientConn, method string, payloads [][]byte, t0 time.Time, rate float64, measuredFrom int, timeout time.Duration, answered string) report {
	n := len(payloads)
	sent := make([]float64, n)
	due := make([]float64, n)
	codes := make([]string, n)
	details := make([]string, n)
	late := make([]float64, n)
	var wg sync.WaitGroup
	time.Sleep(time.Until(t0))
	for i := range payloads {
		dueAt := t0.Add(time.Duration(float64(i) / rate * 1e9))
		if d := time.Until(dueAt); d > 0 {
			time.Sleep(d)
		}
		wg.Add(1)
		go func(i int, dueAt time.Time) {
			defer wg.Done()
			start := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			var reply []byte
			err := conn.Invoke(ctx, method, &payloads[i], &reply)
			done := time.Now()
			late[i] = float64(start.Sub(dueAt)) / 1e6
			sent[i] = float64(done.Sub(start)) / 1e6
			due[i] = float64(done.Sub(dueAt)) / 1e6
			if err != nil {
				st := status.Convert(err)
				codes[i] = st.Code().String()
				details[i] = st.Message()
			}
		}(i, dueAt)
	}
	wg.Wait()
	r := report{Errors: map[string]int{}, Details: map[string]string{}}
	lates := append([]float64(nil), late[measuredFrom:]...)
	sort.Float64s(lates)
	if len(lates) > 0 {
		r.LateMaxMs = lates[len(lates)-1]
		r.LateP99Ms = lates[int(0.99*float64(len(lates)-1))]
	}
	for i := measuredFrom; i < n; i++ {
		r.Calls++
		if codes[i] == "" || codes[i] == answered {
			r.SentMs = append(r.SentMs, sent[i])
			r.DueMs = append(r.DueMs, due[i])
			continue
		}
		r.Errors[codes[i]]++
		if _, ok := r.Details[codes[i]]; !ok {
			r.Details[codes[i]] = details[i]
		}
	}
	return r
}

// serveHealthOnly serves grpc.health.v1 (SERVING) on 127.0.0.1:0 until killed; prints the address.
func serveHealthOnly() error {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Println(lis.Addr().String())
	server := grpc.NewServer()
	healthpb.RegisterHealthServer(server, health.NewServer())
	return server.Serve(lis)
}
