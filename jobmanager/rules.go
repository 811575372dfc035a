package jobmanager

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MessageRules classifies the ErrorMessages of a LessonsImportFailed batch as data errors
// (fix the payload, send again as a new batch) or technical ones (check the systems, may be
// sent again later). It holds ordered rules, each a case-insensitive regular expression and
// a class.
//
// Each message is classified by the FIRST rule that matches it. The default order puts
// duplicates first (a duplicate can never succeed by retrying, and the bridge recognises an
// in-doubt resubmit by them), technical rules second and the other data rules last: within
// one message a technical cause wins over data words, because words such as "Ende",
// "Beginn" or "invalid" often only name the context of an infrastructure failure
// ("Zeitüberschreitung beim Prüfen von Beginn"). Across messages a data error wins: if any
// message matched a data rule the batch is ClassData, since resending the same payload would
// fail again; else if any matched a technical rule it is ClassTechnical; messages no rule
// matches, and an empty list, count as ClassData: no blind retries.
//
// The zero MessageRules has no rules and classifies everything as ClassData. A MessageRules
// is immutable and safe for concurrent use.
type MessageRules struct {
	rules []messageRule
}

type messageRule struct {
	class Class
	re    *regexp.Regexp
}

// defaultRules follow the vendor guide's examples; see MessageRules for their order.
var defaultRules = []messageRule{
	// Duplicates ("Duplicate JobId", "Duplikat").
	{ClassData, regexp.MustCompile(`(?i)duplicate|duplikat`)},
	// Service, queue and database trouble.
	{ClassTechnical, regexp.MustCompile(`(?i)datenbank|database|time-?out|zeitüberschreitung|nicht erreichbar|` +
		`unavailable|nicht verfügbar|\bqueue\b|warteschlange|\bservice\b|deadlock|connection|verbindung`)},
	// Missing mandatory fields.
	{ClassData, regexp.MustCompile(`(?i)pflichtfeld|required|missing|\bfehlt\b`)},
	// Invalid times.
	{ClassData, regexp.MustCompile(`(?i)ungültig|ungueltig|invalid|\bende\b|\bbeginn\b`)},
	// Unknown resources.
	{ClassData, regexp.MustCompile(`(?i)(ressource|resource).*(not found|nicht gefunden|unknown|unbekannt|existiert nicht|does not exist)|` +
		`(not found|nicht gefunden|unknown|unbekannt).*(ressource|resource)`)},
	// Inconsistent IDs.
	{ClassData, regexp.MustCompile(`(?i)inkonsistent|inconsistent|mismatch|stimm\w* nicht überein`)},
}

// DefaultMessageRules returns the rules derived from the vendor guide.
func DefaultMessageRules() MessageRules {
	return MessageRules{rules: defaultRules}
}

// ParseMessageRules reads an operator's extra rules and returns them followed by the
// defaults, so they take precedence. One rule per line: "data <regexp>" or
// "technical <regexp>"; the expression (Go syntax, RE2) is matched case-insensitively unless
// it turns that off with (?-i). Blank lines and lines starting with # are ignored. An error
// names the line.
func ParseMessageRules(r io.Reader) (MessageRules, error) {
	var rules []messageRule
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		word, expr, _ := strings.Cut(line, " ")
		expr = strings.TrimSpace(expr)
		var class Class
		switch word {
		case "data":
			class = ClassData
		case "technical":
			class = ClassTechnical
		default:
			return MessageRules{}, fmt.Errorf("jobmanager: message rules line %d: class %q: want data or technical", n, word)
		}
		if expr == "" {
			return MessageRules{}, fmt.Errorf("jobmanager: message rules line %d: no regular expression", n)
		}
		re, err := regexp.Compile("(?i)" + expr)
		if err != nil {
			return MessageRules{}, fmt.Errorf("jobmanager: message rules line %d: %w", n, err)
		}
		rules = append(rules, messageRule{class, re})
	}
	if err := sc.Err(); err != nil {
		return MessageRules{}, fmt.Errorf("jobmanager: message rules: %w", err)
	}
	return MessageRules{rules: append(rules, defaultRules...)}, nil
}

// Classify returns the class of a failed batch from its ErrorMessages; see MessageRules
// for how rules and messages are weighed. It never returns ClassAuth or the zero Class.
func (r MessageRules) Classify(msgs []string) Class {
	technical := false
	for _, m := range msgs {
		switch r.classifyOne(m) {
		case ClassData:
			return ClassData
		case ClassTechnical:
			technical = true
		}
	}
	if technical {
		return ClassTechnical
	}
	return ClassData
}

// classifyOne returns the class of the first matching rule, or 0.
func (r MessageRules) classifyOne(msg string) Class {
	for _, rule := range r.rules {
		if rule.re.MatchString(msg) {
			return rule.class
		}
	}
	return 0
}

// duplicateMarker finds "Duplicate JobId", "duplicate job ids", "Duplikat JobID", ...
var duplicateMarker = regexp.MustCompile(`(?i)(?:duplicate|duplikate?)\s*(?:of\s+|der\s+)?job[\s_-]*ids?\b\s*([:=])?`)

// DuplicateJobIDs returns the JobIDs named in "Duplicate JobId: <id>" messages (any case,
// several markers per message, several IDs per marker separated by commas, semicolons or
// spaces, optionally quoted), each once, in order of appearance. After a marker the first
// token is taken when it follows a ":" or "=" or is quoted; every other token must contain
// a digit to count as an ID (as generated JobIDs do), so that prose such as "already
// exists" is not mistaken for IDs.
func DuplicateJobIDs(msgs []string) []string {
	var ids []string
	seen := make(map[string]bool)
	for _, msg := range msgs {
		locs := duplicateMarker.FindAllStringSubmatchIndex(msg, -1)
		for i, loc := range locs {
			end := len(msg)
			if i+1 < len(locs) {
				end = locs[i+1][0]
			}
			explicit := loc[2] >= 0
			for j, tok := range strings.FieldsFunc(msg[loc[1]:end], isIDSeparator) {
				first, _ := utf8.DecodeRuneInString(tok)
				quoted := strings.ContainsRune(`'"„“«`, first)
				id := strings.TrimFunc(tok, func(r rune) bool { return strings.ContainsRune(`'"„“”«»()[]{}<>`, r) })
				id = strings.TrimRight(id, ".:!?")
				if id == "" {
					break
				}
				if !(j == 0 && (explicit || quoted)) && !strings.ContainsFunc(id, unicode.IsDigit) {
					break
				}
				if !seen[id] {
					seen[id] = true
					ids = append(ids, id)
				}
			}
		}
	}
	return ids
}

func isIDSeparator(r rune) bool {
	return r == ',' || r == ';' || unicode.IsSpace(r)
}
