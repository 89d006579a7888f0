package inventory

import (
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestRowFieldsMatchColumns checks that the prepared reads (reads.go) select every column of
// their row struct, in the order of the struct's fields, and scan each into its own field: a
// column added to a row struct and not to the read fails here.
func TestRowFieldsMatchColumns(t *testing.T) {
	tests := []struct {
		name    string
		row     any // a pointer to a row struct
		columns []string
		fields  []any
	}{
		{"devices", &deviceRow{}, deviceColumns, nil},
		{"certificates", &certRow{}, certRowColumns, nil},
		{"attempts", &attemptRow{}, attemptColumns, nil},
	}
	for i := range tests {
		switch r := tests[i].row.(type) {
		case *deviceRow:
			tests[i].fields = r.fields()
		case *certRow:
			tests[i].fields = r.fields()
		case *attemptRow:
			tests[i].fields = r.fields()
		}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := reflect.ValueOf(tt.row).Elem()
			var want []string
			for i := range v.NumField() {
				want = append(want, gormColumn(t, v.Type().Field(i)))
			}
			if diff := cmp.Diff(want, tt.columns); diff != "" {
				t.Errorf("columns of %s differ from the row struct's fields (-fields +columns):\n%s", tt.name, diff)
			}
			if len(tt.fields) != v.NumField() {
				t.Fatalf("fields() of %s has %d pointers, want %d", tt.name, len(tt.fields), v.NumField())
			}
			for i, p := range tt.fields {
				if got, want := reflect.ValueOf(p).Pointer(), v.Field(i).Addr().Pointer(); got != want {
					t.Errorf("fields()[%d] of %s does not point at field %s", i, tt.name, v.Type().Field(i).Name)
				}
			}
		})
	}
}

// TestListedCertRowFields checks that the fleet queries' certificate rows (certColumns,
// listedCertRow) are certRow's without the PEM.
func TestListedCertRowFields(t *testing.T) {
	if certRowColumns[certPEMField] != "pem" {
		t.Fatalf("certRowColumns[certPEMField] = %q, want pem", certRowColumns[certPEMField])
	}
	var want []string
	want = append(want, certRowColumns[:certPEMField]...)
	want = append(want, certRowColumns[certPEMField+1:]...)
	if diff := cmp.Diff(want, certColumns); diff != "" {
		t.Errorf("certColumns differ from certRowColumns without pem (-want +got):\n%s", diff)
	}
	var r listedCertRow
	all := r.certRow.fields()
	got := r.fields()
	if len(got) != len(all)-1 {
		t.Fatalf("listedCertRow.fields() has %d pointers, want %d", len(got), len(all)-1)
	}
	for i, p := range got {
		j := i
		if i >= certPEMField {
			j++
		}
		if p != all[j] {
			t.Errorf("listedCertRow.fields()[%d] does not point at the field of column %s", i, certRowColumns[j])
		}
	}
}

// TestLoginRowFields checks that loginRow.fields scans loginSQL's columns into their fields.
func TestLoginRowFields(t *testing.T) {
	var r loginRow
	sel := loginSQL[len("SELECT "):strings.Index(loginSQL, "FROM certificates")]
	var cols []string
	for c := range strings.SplitSeq(sel, ",") {
		c = strings.TrimSpace(c)
		if strings.HasPrefix(c, "COALESCE(") {
			continue // the column is named by the AS after the comma
		}
		if i := strings.LastIndex(c, " AS "); i >= 0 {
			c = c[i+len(" AS "):]
		}
		cols = append(cols, strings.TrimPrefix(c, "c."))
	}
	cert := reflect.ValueOf(&r.Cert).Elem()
	byColumn := map[string]uintptr{
		"device_state": reflect.ValueOf(&r.DeviceState).Pointer(),
		"device_epoch": reflect.ValueOf(&r.Epoch).Pointer(),
	}
	for i := range cert.NumField() {
		byColumn[gormColumn(t, cert.Type().Field(i))] = cert.Field(i).Addr().Pointer()
	}
	fields := r.fields()
	if len(fields) != len(cols) {
		t.Fatalf("loginRow.fields() has %d pointers for %d columns %v", len(fields), len(cols), cols)
	}
	for i, c := range cols {
		if got, want := reflect.ValueOf(fields[i]).Pointer(), byColumn[c]; got != want {
			t.Errorf("loginRow.fields()[%d] does not point at the field of column %s", i, c)
		}
	}
}

// gormColumn is the column named by f's gorm tag.
func gormColumn(t *testing.T, f reflect.StructField) string {
	t.Helper()
	for part := range strings.SplitSeq(f.Tag.Get("gorm"), ";") {
		if c, ok := strings.CutPrefix(part, "column:"); ok {
			return c
		}
	}
	t.Fatalf("field %s has no gorm column", f.Name)
	return ""
}
