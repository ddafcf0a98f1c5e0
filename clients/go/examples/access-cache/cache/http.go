package cache

import (
	"encoding/json"
	"net/http"
)

// Handler answers over HTTP from the cache alone:
//
//	GET /may?user=ID&product=P&unit=ID   {"allowed": true, "profiles": ["Cashier"]}
//	GET /access?user=ID                  the user's Access, 404 when unknown
//	GET /ready                           200 while the answers are current, else 503 and why
//
// unit may be left out: the product without a unit (see Access.May).
func (c *Cache) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /may", func(w http.ResponseWriter, r *http.Request) {
		user, product := r.URL.Query().Get("user"), r.URL.Query().Get("product")
		if user == "" || product == "" {
			http.Error(w, "user and product are required", http.StatusBadRequest)
			return
		}
		profiles := append([]string{}, c.May(user, product, r.URL.Query().Get("unit"))...) // [] rather than null
		reply(w, http.StatusOK, map[string]any{"allowed": len(profiles) > 0, "profiles": profiles})
	})
	mux.HandleFunc("GET /access", func(w http.ResponseWriter, r *http.Request) {
		access, ok := c.Access(r.URL.Query().Get("user"))
		if !ok {
			http.Error(w, "unknown user", http.StatusNotFound)
			return
		}
		reply(w, http.StatusOK, access)
	})
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, r *http.Request) {
		if err := c.Current(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		reply(w, http.StatusOK, map[string]any{"users": c.Len(), "cursor": c.Cursor()})
	})
	return mux
}

func reply(w http.ResponseWriter, code int, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(body)
}
