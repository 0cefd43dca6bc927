// Wrapper module: pins InfluxDB OSS so that `go build` can build influxd
// from the Go module proxy (influxdb's own go.mod has a replace directive,
// so `go install ...@version` is refused). See README.md and influxdb.sh.
module scantrail.local/deploy/influxdb

go 1.23.0

require github.com/influxdata/influxdb/v2 v2.7.12
