package jobmanager

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDefaultMessageRules(t *testing.T) {
	tests := []struct {
		msgs []string
		want Class
	}{
		{[]string{"Fehler: Duplicate JobId: job-20251223-001"}, ClassData},
		{[]string{"Duplikat gefunden"}, ClassData},
		{[]string{"Pflichtfeld RessourceName fehlt"}, ClassData},
		{[]string{"field Beginn is required"}, ClassData},
		{[]string{"missing LektionId"}, ClassData},
		{[]string{"Ende liegt vor Beginn"}, ClassData},
		{[]string{"invalid date format"}, ClassData},
		{[]string{"Zeit ungültig"}, ClassData},
		{[]string{"Ressource 'Raum 9.99' nicht gefunden"}, ClassData},
		{[]string{"resource Raum 9 not found"}, ClassData},
		{[]string{"inkonsistente IDs in Job"}, ClassData},
		{[]string{"Datenbank nicht erreichbar"}, ClassTechnical},
		{[]string{"database deadlock detected"}, ClassTechnical},
		{[]string{"Timeout while processing"}, ClassTechnical},
		{[]string{"Zeitüberschreitung"}, ClassTechnical},
		{[]string{"ZEITÜBERSCHREITUNG"}, ClassTechnical},
		{[]string{"Service unavailable"}, ClassTechnical},
		{[]string{"Queue full"}, ClassTechnical},
		{[]string{"connection reset by peer"}, ClassTechnical},
		// Within one message a technical cause beats data words ...
		{[]string{"Zeitüberschreitung beim Prüfen von Beginn"}, ClassTechnical},
		{[]string{"invalid connection state"}, ClassTechnical},
		// ... but not a duplicate.
		{[]string{"Duplicate JobId j-1 (database constraint)"}, ClassData},
		// Across messages a data error wins.
		{[]string{"Datenbank-Timeout", "Pflichtfeld fehlt"}, ClassData},
		{[]string{"Datenbank-Timeout", "etwas Unbekanntes"}, ClassTechnical},
		// Unknown text and no text: data, no blind retries.
		{[]string{"Fehler 0x42"}, ClassData},
		{nil, ClassData},
		{[]string{"Queueing theory"}, ClassData},
	}
	rules := DefaultMessageRules()
	for _, tt := range tests {
		assert.Equal(t, tt.want, rules.Classify(tt.msgs), "%q", tt.msgs)
	}
	assert.Equal(t, ClassData, MessageRules{}.Classify([]string{"database down"}), "zero rules")
}

func TestParseMessageRules(t *testing.T) {
	rules, err := ParseMessageRules(strings.NewReader(`
# operator rules
technical  Lizenzserver\s+antwortet nicht
  data     database field .* too long
`))
	require.NoError(t, err)
	assert.Equal(t, ClassTechnical, rules.Classify([]string{"LIZENZSERVER antwortet nicht"}))
	assert.Equal(t, ClassData, rules.Classify([]string{"database field Kurs too long"}), "prepended: beats the default technical rule")
	assert.Equal(t, ClassTechnical, rules.Classify([]string{"database down"}), "defaults still apply")
	assert.Equal(t, ClassData, rules.Classify([]string{"Lizenzserver antwortet"}))

	caseSensitive, err := ParseMessageRules(strings.NewReader("technical (?-i)EXACT\n"))
	require.NoError(t, err)
	assert.Equal(t, ClassTechnical, caseSensitive.Classify([]string{"EXACT"}))
	assert.Equal(t, ClassData, caseSensitive.Classify([]string{"exact"}))

	bad := []struct{ in, want string }{
		{"fatal x", `line 1: class "fatal"`},
		{"# c\n\ndata\n", "line 3: no regular expression"},
		{"technical (", "line 1: error parsing regexp"},
		{"auth x", `class "auth"`},
	}
	for _, tt := range bad {
		_, err := ParseMessageRules(strings.NewReader(tt.in))
		assert.ErrorContains(t, err, tt.want, tt.in)
		assert.ErrorContains(t, err, "jobmanager: message rules")
	}
}

func TestDuplicateJobIDs(t *testing.T) {
	tests := []struct {
		msgs []string
		want []string
	}{
		{[]string{"Fehler: Duplicate JobId: job-20251223-001"}, []string{"job-20251223-001"}},
		{[]string{"duplicate jobid: a-1, b-2 c-3;d-4."}, []string{"a-1", "b-2", "c-3", "d-4"}},
		{[]string{"Duplicate JobID 'lb-20251222-0193f0c2-7b1a' already exists"}, []string{"lb-20251222-0193f0c2-7b1a"}},
		{[]string{"DUPLICATE JOBID: abc"}, []string{"abc"}},
		{[]string{"Duplicate JobIds: x-1, x-2 and x-3"}, []string{"x-1", "x-2"}},
		{[]string{"Duplicate JobId: j-1; Duplicate JobId: j-2", "Duplicate JobId: j-1"}, []string{"j-1", "j-2"}},
		{[]string{"Duplikat JobId=\"k-9\""}, []string{"k-9"}},
		{[]string{"Duplicate JobId found"}, nil},
		{[]string{"Pflichtfeld fehlt", "JobId job-1 ok"}, nil},
		{nil, nil},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, DuplicateJobIDs(tt.msgs), "%q", tt.msgs)
	}
}
