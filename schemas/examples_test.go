package schemas

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const examplesDir = "testdata/examples"

// exampleMandator is the subject mandator every lesson-change example is decoded with.
const exampleMandator = "zh-kanti"

// invalidLessonChangeField names, for each invalid lesson-change example, the field that
// Decode's error must name. Files named invalid-go-only-* break a rule that JSON Schema
// cannot express: they must pass the schema and fail Decode.
var invalidLessonChangeField = map[string]string{
	"invalid-attributes-array":               "data.attributes",
	"invalid-body-array":                     "(body)",
	"invalid-case-sensitive-keys":            "specversion",
	"invalid-created-empty-resource":         "data.resource",
	"invalid-created-missing-resource":       "data.resource",
	"invalid-created-missing-start":          "data.start",
	"invalid-data-mandator-pattern":          "data.mandator",
	"invalid-data-null":                      "data",
	"invalid-data-string":                    "data",
	"invalid-datacontenttype":                "datacontenttype",
	"invalid-datacontenttype-bare-suffix":    "datacontenttype",
	"invalid-deleted-bad-start":              "data.start",
	"invalid-empty-lessonid":                 "data.lessonId",
	"invalid-empty-source":                   "source",
	"invalid-end-bad-offset":                 "data.end",
	"invalid-go-only-data-mandator-mismatch": "data.mandator",
	"invalid-go-only-end-before-start":       "data.end",
	"invalid-go-only-end-equals-start":       "data.end",
	"invalid-go-only-leap-second":            "data.start",
	"invalid-go-only-zero-start":             "data.start",
	"invalid-group-number":                   "data.group",
	"invalid-id-null":                        "id",
	"invalid-lessonid-control-char":          "data.lessonId",
	"invalid-lessonid-number":                "data.lessonId",
	"invalid-lessonid-too-long":              "data.lessonId",
	"invalid-missing-data":                   "data",
	"invalid-missing-id":                     "id",
	"invalid-missing-lessonid":               "data.lessonId",
	"invalid-missing-specversion":            "specversion",
	"invalid-missing-type":                   "type",
	"invalid-not-json":                       "(body)",
	"invalid-specversion":                    "specversion",
	"invalid-specversion-number":             "specversion",
	"invalid-start-february-30":              "data.start",
	"invalid-start-not-datetime":             "data.start",
	"invalid-subject-number":                 "subject",
	"invalid-time":                           "time",
	"invalid-time-no-offset":                 "time",
	"invalid-type":                           "type",
	"invalid-updated-missing-end":            "data.end",
}

type example struct {
	name string // file name without .json
	raw  []byte
}

func (x example) valid() bool  { return strings.HasPrefix(x.name, "valid-") }
func (x example) goOnly() bool { return strings.HasPrefix(x.name, "invalid-go-only-") }

func readExamples(t testing.TB, schema string) []example {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(examplesDir, schema, "*.json"))
	require.NoError(t, err)
	require.NotEmpty(t, paths)
	sort.Strings(paths)
	var out []example
	for _, p := range paths {
		raw, err := os.ReadFile(p)
		require.NoError(t, err)
		name := strings.TrimSuffix(filepath.Base(p), ".json")
		require.Truef(t, strings.HasPrefix(name, "valid-") || strings.HasPrefix(name, "invalid-"),
			"%s: example names start with valid- or invalid-", p)
		out = append(out, example{name: name, raw: raw})
	}
	return out
}

// TestLessonChangeExamples runs every lesson-change example through both the JSON Schema
// and Decode and checks that they agree, except for the go-only rules.
func TestLessonChangeExamples(t *testing.T) {
	examples := readExamples(t, SchemaLessonChange)
	seen := map[string]bool{}
	valid, invalid := 0, 0
	for _, x := range examples {
		t.Run(x.name, func(t *testing.T) {
			schemaErr := ValidateSchema(SchemaLessonChange, x.raw)
			e, decodeErr := Decode(x.raw, exampleMandator)
			switch {
			case x.valid():
				valid++
				assert.NoError(t, schemaErr, "schema")
				assert.NoError(t, decodeErr, "Decode")
				if assert.NotNil(t, e) {
					assert.NoError(t, checkInvariants(e, exampleMandator))
				}
			default:
				invalid++
				seen[x.name] = true
				if x.goOnly() {
					assert.NoError(t, schemaErr, "go-only examples must pass the schema")
				} else {
					assert.Error(t, schemaErr, "schema")
				}
				assert.Nil(t, e)
				var de *DecodeError
				if assert.ErrorAs(t, decodeErr, &de) {
					want, ok := invalidLessonChangeField[x.name]
					if assert.Truef(t, ok, "add %s to invalidLessonChangeField", x.name) {
						assert.Containsf(t, fieldsOf(de), want, "Decode error: %v", decodeErr)
					}
				}
			}
		})
	}
	assert.GreaterOrEqual(t, valid, 6)
	assert.GreaterOrEqual(t, invalid, 15)
	for name := range invalidLessonChangeField {
		assert.Truef(t, seen[name], "invalidLessonChangeField names %s, which has no file", name)
	}
}

// TestOutcomeAndDeadLetterExamples checks the outcome and dead-letter header examples
// against their schemas.
func TestOutcomeAndDeadLetterExamples(t *testing.T) {
	for _, schema := range []string{SchemaOutcome, SchemaDeadLetterHeaders} {
		var valid, invalid int
		for _, x := range readExamples(t, schema) {
			t.Run(schema+"/"+x.name, func(t *testing.T) {
				err := ValidateSchema(schema, x.raw)
				if x.valid() {
					valid++
					assert.NoError(t, err)
				} else {
					invalid++
					assert.Error(t, err)
				}
			})
		}
		assert.Positive(t, valid, schema)
		assert.Positive(t, invalid, schema)
	}
}

func fieldsOf(de *DecodeError) []string {
	var fields []string
	for _, f := range de.Fields {
		fields = append(fields, f.Field)
	}
	return fields
}
