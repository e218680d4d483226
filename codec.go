package rediscache

import "encoding/json"

// Codec turns values into bytes and back. Implementations must be safe for
// concurrent use. Marshal's error means the value cannot be stored
// ([ErrInvalidValue]); Unmarshal's error means the stored bytes cannot be
// decoded into v ([ErrCorruptValue]).
type Codec interface {
	Marshal(v any) ([]byte, error)
	Unmarshal(data []byte, v any) error
}

// JSONCodec is the default [Codec]: encoding/json.
type JSONCodec struct{}

var _ Codec = JSONCodec{}

// Marshal returns the JSON encoding of v, or the encoding/json error.
func (JSONCodec) Marshal(v any) ([]byte, error) { return json.Marshal(v) }

// Unmarshal decodes JSON data into v, or returns the encoding/json error.
func (JSONCodec) Unmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }
