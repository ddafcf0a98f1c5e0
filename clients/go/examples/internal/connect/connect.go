// Package connect dials Roster the way the examples are configured:
//
//	ROSTER_SERVER       host:port
//	ROSTER_API_KEY      the key sent on every call
//	ROSTER_PLAINTEXT    set: no TLS (a local server)
//	ROSTER_CA_CERT      trust this CA instead of the system roots
//	ROSTER_CLIENT_CERT  present this client certificate and key (a server
//	ROSTER_CLIENT_KEY   started with --tls-client-ca)
package connect

import (
	"os"

	"github.com/roster-dev/roster/clients/go/roster"
)

// Dial connects as the environment says.
func Dial() (*roster.Client, error) {
	var options []roster.Option
	if os.Getenv("ROSTER_PLAINTEXT") != "" {
		options = append(options, roster.Plaintext())
	} else {
		config, err := roster.TLSConfig(os.Getenv("ROSTER_CA_CERT"), os.Getenv("ROSTER_CLIENT_CERT"), os.Getenv("ROSTER_CLIENT_KEY"))
		if err != nil {
			return nil, err
		}
		options = append(options, roster.WithTLS(config))
	}
	return roster.Dial(os.Getenv("ROSTER_SERVER"), os.Getenv("ROSTER_API_KEY"), options...)
}
