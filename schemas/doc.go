// Package schemas owns lessonbridge's event formats (contract sections 3 to 5): the Go
// types of the lesson-change and batch-outcome events and of the dead-letter headers, the
// JSON Schema files that describe them, and the decoder that validates incoming events.
//
// The JSON Schemas (draft 2020-12, embedded, see SchemaFiles) are:
//
//   - lesson-change.schema.json: a lesson-change event as upstream publishes it;
//   - outcome.schema.json: a batch-outcome event as the bridge publishes it;
//   - deadletter-headers.schema.json: the headers of a dead-letter message, as a JSON
//     object from header name to value.
//
// ValidateSchema checks a document against one of them, asserting formats; it is meant
// for tests and tools. The bridge's intake uses Decode instead: hand-written checks that
// enforce everything the lesson-change schema says, much faster, with field-precise
// errors (*DecodeError), plus the rules JSON Schema cannot express:
//
//   - the mandator (the subject's last token) matches [A-Za-z0-9_-]{1,64}, and
//     data.mandator, when present, equals it;
//   - for lesson.created and lesson.updated, data.end is after data.start, and neither is
//     the zero time 0001-01-01T00:00:00Z;
//   - date-times with a leap second are rejected (time.Time cannot hold them).
//
// Examples of valid and invalid documents live in testdata/examples; the package's tests
// run every lesson-change example through both the schema and Decode and check that they
// agree, except for the rules above (files named invalid-go-only-*).
//
// The package depends on no NATS or HTTP code, so that upstream and downstream Go programs
// can import it.
package schemas
