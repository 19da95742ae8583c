// Command mem-front is mem serve's optional gRPC front (MEM_SERVING_FRONT=go): a compiled server
// that holds the clients' connections and hands each MemService call to the Python process
// over one local socket, so that Python spends its time on the decision, not on HTTP/2.
//
// Started by mem serve (mem_serving/front.py), never by hand: the socket to Python is the file
// descriptor -fd. Every other method (health, reflection) is proxied, stream for stream, to
// mem serve's own grpc.aio server on a loopback port (-upstream).
//
// Frames on the socket, little-endian, each preceded by its length (uint32):
//
//	call   (to Python):   kind=1 u8, id u64, timeout_us i64 (-1: none), method u16+bytes, authorization u16+bytes, request bytes
//	cancel (to Python):   kind=2 u8, id u64
//	reply  (from Python): id u64, code u8, message u16+bytes, response bytes
//	TLS pair (from Python): id 0, kind 1 (u8), message u16 (0), key length u32, key PEM, certificate PEM
//
// With -tls the front serves TLS with the pair Python sends (first before it serves, then after
// every reload Python makes), so Python stays the one reader and checker of the files.
//
// On start it prints "port N" once bound (or "error: ..." and exits 1). It exits when the
// socket closes (mem serve is gone) or on SIGTERM, after a graceful stop of -grace seconds.
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

const servicePrefix = "/mem.v1.MemService/"

// deadlineMargin: calls end this long before their deadline (see handle).
const deadlineMargin = time.Millisecond

// rawCodec passes message bytes through: Python decodes and encodes them.
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

type reply struct {
	code    codes.Code
	message string
	payload []byte
}

// upstream is the socket to the Python process: calls out, replies back by id.
type upstream struct {
	control func(kind byte, payload []byte)
	out     chan []byte
	mu      sync.Mutex
	waiting map[uint64]chan reply
	nextID  atomic.Uint64
	closed  chan struct{}
}

func newUpstream(conn net.Conn, control func(kind byte, payload []byte)) *upstream {
	u := &upstream{control: control, out: make(chan []byte, 4096), waiting: map[uint64]chan reply{}, closed: make(chan struct{})}
	go u.write(conn)
	go u.read(conn)
	return u
}

// write sends queued frames, several per system call when they queue up.
func (u *upstream) write(conn net.Conn) {
	w := bufio.NewWriterSize(conn, 1<<16)
	for frame := range u.out {
		w.Write(frame)
		for more := true; more; {
			select {
			case f := <-u.out:
				w.Write(f)
			default:
				more = false
			}
		}
		if err := w.Flush(); err != nil {
			return
		}
	}
}

func (u *upstream) read(conn net.Conn) {
	defer close(u.closed)
	r := bufio.NewReaderSize(conn, 1<<16)
	var head [4]byte
	for {
		if _, err := io.ReadFull(r, head[:]); err != nil {
			return
		}
		frame := make([]byte, binary.LittleEndian.Uint32(head[:]))
		if _, err := io.ReadFull(r, frame); err != nil {
			return
		}
		if len(frame) < 11 {
			continue
		}
		id := binary.LittleEndian.Uint64(frame)
		n := int(binary.LittleEndian.Uint16(frame[9:]))
		if len(frame) < 11+n {
			continue
		}
		if id == 0 {
			u.control(frame[8], frame[11+n:])
			continue
		}
		rep := reply{code: codes.Code(frame[8]), message: string(frame[11 : 11+n]), payload: frame[11+n:]}
		u.mu.Lock()
		ch := u.waiting[id]
		delete(u.waiting, id)
		u.mu.Unlock()
		if ch != nil {
			ch <- rep
		}
	}
}

func (u *upstream) call(ctx context.Context, method string, auth string, request []byte) (reply, error) {
	id := u.nextID.Add(1)
	timeout := int64(-1)
	if d, ok := ctx.Deadline(); ok {
		timeout = max(time.Until(d).Microseconds(), 0)
	}
	frame := make([]byte, 4, 4+1+8+8+2+len(method)+2+len(auth)+len(request))
	frame = append(frame, 1)
	frame = binary.LittleEndian.AppendUint64(frame, id)
	frame = binary.LittleEndian.AppendUint64(frame, uint64(timeout))
	frame = binary.LittleEndian.AppendUint16(frame, uint16(len(method)))
	frame = append(frame, method...)
	frame = binary.LittleEndian.AppendUint16(frame, uint16(len(auth)))
	frame = append(frame, auth...)
	frame = append(frame, request...)
	binary.LittleEndian.PutUint32(frame, uint32(len(frame)-4))
	ch := make(chan reply, 1)
	u.mu.Lock()
	u.waiting[id] = ch
	u.mu.Unlock()
	forget := func() {
		u.mu.Lock()
		delete(u.waiting, id)
		u.mu.Unlock()
	}
	select {
	case u.out <- frame:
	case <-ctx.Done(): // mem serve is not reading (the queue is full): the call never reached it
		forget()
		return reply{}, status.FromContextError(ctx.Err()).Err()
	case <-u.closed:
		forget()
		return reply{}, status.Error(codes.Unavailable, "mem serve is not running")
	}
	select {
	case rep := <-ch:
		return rep, nil
	case <-ctx.Done():
		forget()
		cancel := make([]byte, 4, 13)
		cancel = append(cancel, 2)
		cancel = binary.LittleEndian.AppendUint64(cancel, id)
		binary.LittleEndian.PutUint32(cancel, 9)
		select {
		case u.out <- cancel:
		default:
		}
		return reply{}, status.FromContextError(ctx.Err()).Err()
	case <-u.closed:
		return reply{}, status.Error(codes.Unavailable, "mem serve is not running")
	}
}

type front struct {
	up    *upstream
	proxy *grpc.ClientConn
}

// handle serves every method: MemService's through the socket, the rest by the proxy.
func (f *front) handle(_ any, stream grpc.ServerStream) error {
	method, ok := grpc.MethodFromServerStream(stream)
	if !ok {
		return status.Error(codes.Internal, "no method")
	}
	if !strings.HasPrefix(method, servicePrefix) {
		return f.forward(method, stream)
	}
	var request []byte
	if err := stream.RecvMsg(&request); err != nil {
		return err
	}
	ctx := stream.Context()
	auth := ""
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get("authorization"); len(v) > 0 {
			auth = v[0]
		}
	}
	if d, ok := ctx.Deadline(); ok {
		// grpc-go resets the stream (RST_STREAM CANCEL) when the deadline passes, and the reset
		// can reach the client before its own timer fires: it would see CANCELLED. Ending the
		// call a little earlier sends DEADLINE_EXCEEDED first, as grpc.aio's server does (most
		// of the time: the two timers can still fire in either order on a busy machine).
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, d.Add(-deadlineMargin))
		defer cancel()
	}
	rep, err := f.up.call(ctx, method, auth, request)
	if err != nil {
		return err
	}
	if rep.code != codes.OK {
		return status.Error(rep.code, rep.message)
	}
	return stream.SendMsg(&rep.payload)
}

// forward proxies one call of any streaming kind to mem serve's own server, metadata included.
func (f *front) forward(method string, server grpc.ServerStream) error {
	ctx, cancel := context.WithCancel(server.Context())
	defer cancel()
	md, _ := metadata.FromIncomingContext(ctx)
	client, err := f.proxy.NewStream(metadata.NewOutgoingContext(ctx, md.Copy()),
		&grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, method, grpc.ForceCodec(rawCodec{}))
	if err != nil {
		return err
	}
	go func() { // the client's messages upstream; a failure either way ends the call below
		for {
			var m []byte
			if err := server.RecvMsg(&m); err != nil {
				if errors.Is(err, io.EOF) {
					client.CloseSend()
				}
				return
			}
			if client.SendMsg(&m) != nil { // the upstream's status comes with RecvMsg below
				return
			}
		}
	}()
	headerSent := false
	for {
		var m []byte
		err := client.RecvMsg(&m)
		if !headerSent {
			if h, herr := client.Header(); herr == nil {
				server.SendHeader(h)
			}
			headerSent = true
		}
		if errors.Is(err, io.EOF) {
			server.SetTrailer(client.Trailer())
			return nil
		}
		if err != nil {
			server.SetTrailer(client.Trailer())
			return err
		}
		if err := server.SendMsg(&m); err != nil {
			return err
		}
	}
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address the clients connect to")
	upstreamAddr := flag.String("upstream", "", "mem serve's own gRPC server, for the methods not sent over the socket")
	grace := flag.Float64("grace", 5, "seconds calls in flight get on SIGTERM")
	maxMessage := flag.Int("max-message", 8<<20, "largest request accepted, bytes")
	fd := flag.Int("fd", 3, "descriptor of the socket to mem serve")
	tlsOn := flag.Bool("tls", false, "serve TLS with the pair mem serve sends")
	flag.Parse()

	conn, err := net.FileConn(os.NewFile(uintptr(*fd), "mem-serve"))
	if err != nil {
		fmt.Println("error: no socket to mem serve on descriptor", *fd, err)
		os.Exit(1)
	}
	proxy, err := grpc.NewClient(*upstreamAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(*maxMessage)))
	if err != nil {
		fmt.Println("error: upstream:", err)
		os.Exit(1)
	}
	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Printf("error: cannot bind %s: %v\n", *listen, err)
		os.Exit(1)
	}
	var pair atomic.Pointer[tls.Certificate]
	firstPair := make(chan struct{})
	var once sync.Once
	control := func(kind byte, payload []byte) {
		if kind != 1 || len(payload) < 4 {
			return
		}
		n := int(binary.LittleEndian.Uint32(payload))
		if len(payload) < 4+n {
			return
		}
		c, err := tls.X509KeyPair(payload[4+n:], payload[4:4+n])
		if err != nil { // Python checked the pair; keep the one in force
			fmt.Fprintln(os.Stderr, "mem-front: TLS pair refused:", err)
			return
		}
		pair.Store(&c)
		once.Do(func() { close(firstPair) })
	}
	f := &front{up: newUpstream(conn, control), proxy: proxy}
	options := []grpc.ServerOption{grpc.UnknownServiceHandler(f.handle), grpc.ForceServerCodec(rawCodec{}),
		grpc.MaxRecvMsgSize(*maxMessage)}
	if *tlsOn {
		options = append(options, grpc.Creds(credentials.NewTLS(&tls.Config{
			MinVersion:     tls.VersionTLS12,
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return pair.Load(), nil },
		})))
	}
	server := grpc.NewServer(options...)
	fmt.Printf("port %d\n", lis.Addr().(*net.TCPAddr).Port)
	os.Stdout.Sync()
	if *tlsOn { // connections wait in the listen queue until the pair has come
		select {
		case <-firstPair:
		case <-f.up.closed:
			os.Exit(0)
		}
	}

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		select {
		case <-stop:
		case <-f.up.closed:
		}
		done := make(chan struct{})
		go func() { server.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-time.After(time.Duration(*grace * float64(time.Second))):
			server.Stop()
		}
	}()
	if err := server.Serve(lis); err != nil {
		fmt.Fprintln(os.Stderr, "mem-front:", err)
		os.Exit(1)
	}
}
