package cache

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/roster-dev/roster/clients/go/rosterv1"
)

func TestTheHTTPServiceAnswersFromTheCache(t *testing.T) {
	c := New(nil)
	c.users["u1"] = access(true, grant("g1", "Cashier", rosterv1.UnitScope_UNIT_SCOPE_UNITS, south))
	handler := c.Handler()
	get := func(target string) (int, string) {
		recorder := httptest.NewRecorder()
		handler.ServeHTTP(recorder, httptest.NewRequest(http.MethodGet, target, nil))
		return recorder.Code, strings.TrimSpace(recorder.Body.String())
	}
	if code, body := get("/ready"); code != http.StatusServiceUnavailable || !strings.Contains(body, "not read yet") {
		t.Fatalf("/ready before the list: %d %s", code, body)
	}
	if code, body := get("/may?user=u1&product=Point+of+Sale&unit=" + south); body != `{"allowed":false,"profiles":[]}` {
		t.Fatalf("/may before the list: %d %s", code, body)
	}
	c.readyOnce.Do(func() { close(c.ready) })
	cases := map[string]string{
		"/may?user=u1&product=Point+of+Sale&unit=" + south: `{"allowed":true,"profiles":["Cashier"]}`,
		"/may?user=u1&product=Point+of+Sale&unit=" + north: `{"allowed":false,"profiles":[]}`,
		"/may?user=u9&product=Point+of+Sale":               `{"allowed":false,"profiles":[]}`,
		"/ready":                                           `{"cursor":"","users":1}`,
	}
	for target, want := range cases {
		if code, body := get(target); code != http.StatusOK || body != want {
			t.Errorf("%s: %d %s, want %s", target, code, body, want)
		}
	}
	for _, target := range []string{"/may?user=u1", "/may?product=Point+of+Sale"} {
		if code, _ := get(target); code != http.StatusBadRequest {
			t.Errorf("%s: %d, want 400", target, code)
		}
	}
	if code, _ := get("/access?user=u9"); code != http.StatusNotFound {
		t.Errorf("/access of an unknown user: %d", code)
	}
	if code, body := get("/access?user=u1"); code != http.StatusOK || !strings.Contains(body, `"product":"Point of Sale"`) {
		t.Errorf("/access of u1: %d %s", code, body)
	}
}
