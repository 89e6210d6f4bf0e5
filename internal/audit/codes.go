package audit

import (
	"fmt"
	"slices"
	"strings"
)

// ParseCodes reads finding codes, comma-separated (spaces around each are
// ignored), into codes, each once, in the order given. A code no rule has is
// an error that lists those of socket rules; the caller decides what a code
// of the tunables (Tunable) means to it.
func ParseCodes(codes []Code, s string) ([]Code, error) {
	for _, v := range strings.Split(s, ",") {
		c := Code(strings.TrimSpace(v))
		if !slices.Contains(Codes, c) {
			var names []string
			for _, k := range Codes {
				if !k.Tunable() {
					names = append(names, string(k))
				}
			}
			return nil, fmt.Errorf("unknown finding code %q (codes of socket findings: %s)", c, strings.Join(names, ", "))
		}
		if !slices.Contains(codes, c) {
			codes = append(codes, c)
		}
	}
	return codes, nil
}
