package topaz

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"go.yaml.in/yaml/v3"
)

// Object is a directory object, as Topaz imports it.
type Object struct {
	Type        string         `json:"type"`
	ID          string         `json:"id"`
	DisplayName string         `json:"display_name,omitempty"`
	Properties  map[string]any `json:"properties,omitempty"`
}

// Relation is a directory relation, as Topaz imports it.
type Relation struct {
	ObjectType  string `json:"object_type"`
	ObjectID    string `json:"object_id"`
	Relation    string `json:"relation"`
	SubjectType string `json:"subject_type"`
	SubjectID   string `json:"subject_id"`
}

// Directory is a small in-memory Topaz directory: objects, relations and
// the manifest's permissions. It is safe for concurrent use.
type Directory struct {
	mu          sync.RWMutex
	objects     map[string]Object              // by type + "\x00" + id
	relations   map[Relation]bool              // direct relations
	permissions map[string]map[string][]string // object type → permission → relations or permissions
}

// NewDirectory returns an empty directory.
func NewDirectory() *Directory {
	return &Directory{
		objects:     make(map[string]Object),
		relations:   make(map[Relation]bool),
		permissions: make(map[string]map[string][]string),
	}
}

// Load imports every manifest.yaml and *.json file of dir, as
// `topaz directory set manifest` and `topaz directory import -d` would.
func (d *Directory) Load(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		path := filepath.Join(dir, e.Name())
		switch {
		case e.Name() == "manifest.yaml":
			err = d.loadManifest(path)
		case strings.HasSuffix(e.Name(), ".json"):
			err = d.loadData(path)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	}
	return nil
}

func (d *Directory) loadManifest(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var m struct {
		Model struct {
			Version int `yaml:"version"`
		} `yaml:"model"`
		Types map[string]struct {
			Relations   map[string]string `yaml:"relations"`
			Permissions map[string]string `yaml:"permissions"`
		} `yaml:"types"`
	}
	if err := yaml.Unmarshal(b, &m); err != nil {
		return err
	}
	if m.Model.Version != 3 {
		return fmt.Errorf("model version %d: the stand-in reads version 3", m.Model.Version)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for typ, def := range m.Types {
		for name, expr := range def.Permissions {
			var parts []string
			for p := range strings.SplitSeq(expr, "|") {
				p = strings.TrimSpace(p)
				if p == "" || strings.ContainsAny(p, "&-> ") {
					return fmt.Errorf("permission %s.%s = %q: the stand-in understands unions of relations only", typ, name, expr)
				}
				parts = append(parts, p)
			}
			if d.permissions[typ] == nil {
				d.permissions[typ] = make(map[string][]string)
			}
			d.permissions[typ][name] = parts
		}
	}
	return nil
}

func (d *Directory) loadData(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var data struct {
		Objects   []Object   `json:"objects"`
		Relations []Relation `json:"relations"`
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&data); err != nil {
		return err
	}
	for _, o := range data.Objects {
		if o.Type == "" || o.ID == "" {
			return errors.New("an object without a type or id")
		}
		d.AddObject(o)
	}
	for _, r := range data.Relations {
		d.AddRelation(r)
	}
	return nil
}

// AddObject adds or replaces an object.
func (d *Directory) AddObject(o Object) {
	d.mu.Lock()
	d.objects[o.Type+"\x00"+o.ID] = o
	d.mu.Unlock()
}

// AddRelation adds a relation.
func (d *Directory) AddRelation(r Relation) {
	d.mu.Lock()
	d.relations[r] = true
	d.mu.Unlock()
}

// User resolves an identity to its user object as topazd does when no
// identity object names it: the user whose id is the identity.
func (d *Directory) User(identity string) (Object, bool) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	o, ok := d.objects["user\x00"+identity]
	return o, ok
}

// Check answers ds.check: whether subject has relation (a relation or a
// permission of the manifest) to object.
func (d *Directory) Check(objectType, objectID, relation, subjectType, subjectID string) bool {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.check(objectType, objectID, relation, subjectType, subjectID, 0)
}

func (d *Directory) check(objectType, objectID, relation, subjectType, subjectID string, depth int) bool {
	if depth > 8 {
		return false
	}
	if d.relations[Relation{objectType, objectID, relation, subjectType, subjectID}] {
		return true
	}
	for _, r := range d.permissions[objectType][relation] {
		if d.check(objectType, objectID, r, subjectType, subjectID, depth+1) {
			return true
		}
	}
	return false
}
