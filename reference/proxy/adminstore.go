package proxy

import (
	"github.com/google/renameio/v2"

	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// The admin store: a JSON file holding the admin-managed namespaces. It is
// written atomically (a temp file in the same folder, then rename), so a
// reader never sees half a file, and every read-modify-write holds an
// advisory lock on <file>.lock (flock), so proxies sharing the file
// serialise their changes and none is lost.

// storeVersion is the store file's format version.
const storeVersion = 1

// storeDoc is the store file.
type storeDoc struct {
	Version    int                        `json:"version"`
	Namespaces map[string]storedNamespace `json:"namespaces"`
}

// storedNamespace is one admin-managed namespace in the store.
type storedNamespace struct {
	Revision int64  `json:"revision"`
	Spec     string `json:"spec"`
}

// fileStore is the admin store in a file.
type fileStore struct {
	path string
}

// read returns the store's content; a store file that does not exist yet
// is empty.
func (s *fileStore) read() (storeDoc, []byte, error) {
	doc := storeDoc{Version: storeVersion, Namespaces: map[string]storedNamespace{}}
	b, err := os.ReadFile(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return doc, nil, nil
	}
	if err != nil {
		return doc, nil, fmt.Errorf("read admin store: %w", err)
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return doc, nil, fmt.Errorf("read admin store %s: %w", s.path, err)
	}
	if doc.Version != storeVersion {
		return doc, nil, fmt.Errorf("read admin store %s: format version %d, this proxy reads %d", s.path, doc.Version, storeVersion)
	}
	if doc.Namespaces == nil {
		doc.Namespaces = map[string]storedNamespace{}
	}
	return doc, b, nil
}

// update reads the store under its lock, lets fn change it, and writes it
// back atomically when fn returns nil; with an error nothing is written.
func (s *fileStore) update(fn func(doc *storeDoc) error) error {
	unlock, err := lockFile(s.path + ".lock")
	if err != nil {
		return fmt.Errorf("lock admin store: %w", err)
	}
	defer unlock()
	doc, _, err := s.read()
	if err != nil {
		return err
	}
	if err := fn(&doc); err != nil {
		return err
	}
	return s.write(doc)
}

func (s *fileStore) write(doc storeDoc) error {
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return fmt.Errorf("write admin store: %w", err)
	}
	if err := renameio.WriteFile(s.path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("write admin store: %w", err)
	}
	return nil
}
