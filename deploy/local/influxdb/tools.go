//go:build tools

// Package tools only records the two main packages that influxdb.sh builds,
// so that `go mod tidy` keeps them (and their dependencies) in go.sum.
package tools

import (
	_ "github.com/influxdata/influxdb/v2/cmd/influxd"
	_ "github.com/influxdata/pkg-config"
)
