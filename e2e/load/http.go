package load

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
)

// buildRequest returns the bytes of one GET request, written in one Write.
func buildRequest(host, target string, closeConn bool) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: hotswap-load\r\n", target, host)
	if closeConn {
		b.WriteString("Connection: close\r\n")
	}
	b.WriteString("\r\n")
	return b.Bytes()
}

// response is what the client keeps of one response. The header values
// are copied into buffers owned by the response and reused, so reading a
// response does not allocate.
type response struct {
	status     int
	closeConn  bool   // the server will close (or has closed) the connection
	version    []byte // X-Hotswap-Version
	generation []byte // X-Hotswap-Generation
	pid        []byte // X-Hotswap-Pid
}

// readResponse reads one full response (interim 1xx responses skipped, body
// discarded) from br into resp. A connection closed before the response is
// complete gives io.EOF or io.ErrUnexpectedEOF.
func readResponse(br *bufio.Reader, resp *response) error {
	resp.version, resp.generation, resp.pid = resp.version[:0], resp.generation[:0], resp.pid[:0]
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			if err == io.EOF && len(line) > 0 {
				err = io.ErrUnexpectedEOF
			}
			return lineErr(err)
		}
		status, minor, ok := parseStatusLine(line)
		if !ok {
			return fmt.Errorf("%w: status line %q", errProtocol, trimCRLF(line))
		}
		var (
			contentLength       int64 = -1
			chunked, cClose, kA bool
		)
		for {
			line, err = br.ReadSlice('\n')
			if err != nil {
				return lineErr(unexpected(err))
			}
			line = trimCRLF(line)
			if len(line) == 0 {
				break
			}
			i := bytes.IndexByte(line, ':')
			if i <= 0 {
				if line[0] == ' ' || line[0] == '\t' {
					continue // obsolete line folding: ignore
				}
				return fmt.Errorf("%w: header line %q", errProtocol, line)
			}
			name, val := line[:i], trimSpace(line[i+1:])
			switch len(name) {
			case len("content-length"):
				if bytes.EqualFold(name, []byte("content-length")) {
					n, ok := parseDecimal(val)
					if !ok {
						return fmt.Errorf("%w: Content-Length %q", errProtocol, val)
					}
					contentLength = n
				}
			case len("transfer-encoding"): // == len("x-hotswap-version")
				if bytes.EqualFold(name, []byte("transfer-encoding")) {
					chunked = hasToken(val, "chunked")
				} else if bytes.EqualFold(name, []byte("x-hotswap-version")) {
					resp.version = append(resp.version[:0], val...)
				}
			case len("connection"):
				if bytes.EqualFold(name, []byte("connection")) {
					cClose = cClose || hasToken(val, "close")
					kA = kA || hasToken(val, "keep-alive")
				}
			case len("x-hotswap-generation"):
				if bytes.EqualFold(name, []byte("x-hotswap-generation")) {
					resp.generation = append(resp.generation[:0], val...)
				}
			case len("x-hotswap-pid"):
				if bytes.EqualFold(name, []byte("x-hotswap-pid")) {
					resp.pid = append(resp.pid[:0], val...)
				}
			}
		}
		if status >= 100 && status < 200 {
			if status == 101 {
				return fmt.Errorf("%w: unexpected 101 Switching Protocols", errProtocol)
			}
			continue // interim response: the final one follows
		}
		resp.status = status
		resp.closeConn = cClose || (minor == 0 && !kA)
		switch {
		case status == 204 || status == 304:
		case chunked:
			err = readChunked(br)
		case contentLength >= 0:
			_, err = br.Discard(int(contentLength))
			err = unexpected(err)
		default:
			// No length: the body ends when the server closes.
			_, err = io.Copy(io.Discard, br)
			resp.closeConn = true
		}
		return err
	}
}

// readChunked discards a chunked body and its trailers.
func readChunked(br *bufio.Reader) error {
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return lineErr(unexpected(err))
		}
		sz := trimCRLF(line)
		if i := bytes.IndexByte(sz, ';'); i >= 0 {
			sz = sz[:i]
		}
		n, ok := parseHex(trimSpace(sz))
		if !ok {
			return fmt.Errorf("%w: chunk size %q", errProtocol, trimCRLF(line))
		}
		if n == 0 {
			for { // trailers up to the empty line
				line, err = br.ReadSlice('\n')
				if err != nil {
					return lineErr(unexpected(err))
				}
				if len(trimCRLF(line)) == 0 {
					return nil
				}
			}
		}
		if _, err := br.Discard(int(n)); err != nil {
			return unexpected(err)
		}
		line, err = br.ReadSlice('\n')
		if err != nil {
			return lineErr(unexpected(err))
		}
		if len(trimCRLF(line)) != 0 {
			return fmt.Errorf("%w: no CRLF after chunk", errProtocol)
		}
	}
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

func lineErr(err error) error {
	if err == bufio.ErrBufferFull {
		return fmt.Errorf("%w: line longer than %d bytes", errProtocol, readBufSize)
	}
	return err
}

// parseStatusLine parses "HTTP/1.x NNN reason".
func parseStatusLine(line []byte) (status, minor int, ok bool) {
	line = trimCRLF(line)
	if len(line) < 12 || string(line[:7]) != "HTTP/1." || line[8] != ' ' || (len(line) > 12 && line[12] != ' ') {
		return 0, 0, false
	}
	if line[7] < '0' || line[7] > '9' {
		return 0, 0, false
	}
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return 0, 0, false
		}
		status = status*10 + int(c-'0')
	}
	return status, int(line[7] - '0'), true
}

func parseDecimal(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

func parseHex(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 15 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		n = n<<4 | int64(c)
	}
	return n, true
}

// hasToken reports whether the comma-separated list v holds tok (ASCII
// case-insensitive).
func hasToken(v []byte, tok string) bool {
	for len(v) > 0 {
		i := bytes.IndexByte(v, ',')
		var t []byte
		if i < 0 {
			t, v = v, nil
		} else {
			t, v = v[:i], v[i+1:]
		}
		if bytes.EqualFold(trimSpace(t), []byte(tok)) {
			return true
		}
	}
	return false
}

func trimCRLF(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == '\n' {
		b = b[:n-1]
		if n := len(b); n > 0 && b[n-1] == '\r' {
			b = b[:n-1]
		}
	}
	return b
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}
