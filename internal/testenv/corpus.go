package testenv

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"testing"
)

// QuotedLines reads a test corpus kept as one Go-quoted string a line,
// skipping blank lines and # comments, and fails t if the file is
// unreadable or a line is not a quoted string.
func QuotedLines(t testing.TB, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		v, err := strconv.Unquote(line)
		if err != nil {
			t.Fatalf("%s: bad line %q: %v", path, line, err)
		}
		out = append(out, v)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
