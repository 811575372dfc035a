package schemas

import (
	"bytes"
	"embed"
	"fmt"
	"io/fs"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// Names of the JSON Schemas, for ValidateSchema; the files are <name>.schema.json.
const (
	SchemaLessonChange      = "lesson-change"      // contract section 3
	SchemaOutcome           = "outcome"            // contract section 4
	SchemaDeadLetterHeaders = "deadletter-headers" // contract section 5, headers as a JSON object
)

var schemaNames = []string{SchemaLessonChange, SchemaOutcome, SchemaDeadLetterHeaders}

//go:embed *.schema.json
var schemaFS embed.FS

// SchemaFiles returns the JSON Schema files (draft 2020-12), named <name>.schema.json, at
// the root of the returned file system.
func SchemaFiles() fs.FS { return schemaFS }

var compiled struct {
	once    sync.Once
	schemas map[string]*jsonschema.Schema
	err     error
}

// ValidateSchema validates the JSON document raw against the named schema
// (SchemaLessonChange, SchemaOutcome or SchemaDeadLetterHeaders), asserting formats. It
// returns nil if raw is valid; the error wraps a *jsonschema.ValidationError when raw is
// JSON that does not conform.
//
// NOTE: it is meant for tests and tools. The schemas are compiled once, on first use; the
// bridge's intake uses Decode, which is much faster and also checks what the lesson-change
// schema cannot express.
func ValidateSchema(name string, raw []byte) error {
	compiled.once.Do(compileSchemas)
	if compiled.err != nil {
		return compiled.err
	}
	sch, ok := compiled.schemas[name]
	if !ok {
		return fmt.Errorf("schemas: unknown schema %q", name)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return fmt.Errorf("schemas: %s: parse document: %w", name, err)
	}
	if err := sch.Validate(doc); err != nil {
		return fmt.Errorf("schemas: %s: %w", name, err)
	}
	return nil
}

func compileSchemas() {
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	ids := make(map[string]string, len(schemaNames))
	for _, name := range schemaNames {
		file := name + ".schema.json"
		b, err := schemaFS.ReadFile(file)
		if err != nil {
			compiled.err = fmt.Errorf("schemas: read %s: %w", file, err)
			return
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			compiled.err = fmt.Errorf("schemas: parse %s: %w", file, err)
			return
		}
		obj, _ := doc.(map[string]any)
		id, _ := obj["$id"].(string)
		if id == "" {
			compiled.err = fmt.Errorf("schemas: %s has no $id", file)
			return
		}
		if err := c.AddResource(id, doc); err != nil {
			compiled.err = fmt.Errorf("schemas: add %s: %w", file, err)
			return
		}
		ids[name] = id
	}
	compiled.schemas = make(map[string]*jsonschema.Schema, len(ids))
	for name, id := range ids {
		sch, err := c.Compile(id)
		if err != nil {
			compiled.err = fmt.Errorf("schemas: compile %s: %w", name, err)
			return
		}
		compiled.schemas[name] = sch
	}
}
