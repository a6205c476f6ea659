package plugin

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// DialPID connects to the gRPC server of the plugin process pid, which some
// other host (a reference proxy under test) launched: the protocol's
// handshake line went to that host, so the address is found from the
// listening socket the process holds (a unix socket, or a TCP one on
// 127.0.0.1; Linux /proc). Specs use it to read what a plugin reports about
// the calls a host forwarded to it (its HealthCheck's standard details),
// never to send it data calls.
func DialPID(pid int) (*grpc.ClientConn, error) {
	target, err := ListenTarget(pid)
	if err != nil {
		return nil, err
	}
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, fmt.Errorf("dial plugin %d at %s: %w", pid, target, err)
	}
	return conn, nil
}

// ListenTarget returns the gRPC target ("unix:///path" or "127.0.0.1:port")
// of the socket process pid listens on.
func ListenTarget(pid int) (string, error) {
	inodes, err := socketInodes(pid)
	if err != nil {
		return "", err
	}
	proc := filepath.Join("/proc", strconv.Itoa(pid), "net")
	if path, err := scanProcNet(filepath.Join(proc, "unix"), func(f []string) (string, bool) {
		// Num RefCount Protocol Flags Type St Inode Path; flag 0x10000 is __SO_ACCEPTCON (listening).
		if len(f) < 8 || f[3] != "00010000" || !inodes[f[6]] {
			return "", false
		}
		return "unix://" + f[7], true
	}); err != nil || path != "" {
		return path, err
	}
	addr, err := scanProcNet(filepath.Join(proc, "tcp"), func(f []string) (string, bool) {
		// sl local_address rem_address st ... inode(9); st 0A is LISTEN.
		if len(f) < 10 || f[3] != "0A" || !inodes[f[9]] {
			return "", false
		}
		host, port, ok := strings.Cut(f[1], ":")
		b, err := hex.DecodeString(host)
		p, perr := strconv.ParseUint(port, 16, 16)
		if !ok || err != nil || perr != nil || len(b) != 4 {
			return "", false
		}
		ip := net.IPv4(b[3], b[2], b[1], b[0]) // little-endian on every Linux Prism runs on
		return net.JoinHostPort(ip.String(), strconv.FormatUint(p, 10)), true
	})
	if err != nil {
		return "", err
	}
	if addr == "" {
		return "", fmt.Errorf("find plugin %d's socket: it listens on no unix or IPv4 TCP socket", pid)
	}
	return addr, nil
}

// socketInodes returns the inodes of the sockets process pid has open.
func socketInodes(pid int) (map[string]bool, error) {
	dir := filepath.Join("/proc", strconv.Itoa(pid), "fd")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("find plugin %d's socket: %w", pid, err)
	}
	out := map[string]bool{}
	for _, e := range entries {
		l, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil {
			continue // closed meanwhile
		}
		if in, ok := strings.CutPrefix(l, "socket:["); ok {
			out[strings.TrimSuffix(in, "]")] = true
		}
	}
	return out, nil
}

// scanProcNet returns the first non-empty result of match over the lines of
// a /proc/net table, header skipped.
func scanProcNet(path string, match func(fields []string) (string, bool)) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("find plugin socket: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		if s, ok := match(strings.Fields(sc.Text())); ok {
			return s, nil
		}
	}
	return "", sc.Err()
}
