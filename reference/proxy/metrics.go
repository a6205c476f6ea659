package proxy

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc/codes"
)

// Label values used where a request names no configured namespace or an
// unknown method, so that clients cannot grow the metrics without bound.
const (
	labelNoNamespace      = "(none)"
	labelUnknownNamespace = "(unknown)"
	labelUnknownMethod    = "(unknown)"
)

// metrics are the proxy's Prometheus metrics, in a registry of its own.
type metrics struct {
	reg       *prometheus.Registry
	requests  *prometheus.CounterVec
	errors    *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	inflight  *prometheus.GaugeVec
	restarts  *prometheus.CounterVec
	pluginUp  *prometheus.GaugeVec
	mode      *prometheus.GaugeVec
	health    *prometheus.GaugeVec
	draining  prometheus.Gauge
	healthAll []string
}

func newMetrics() *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "prism_proxy_requests_total",
		Help: "Calls received, by namespace and method."}, []string{"namespace", "method"})
	m.errors = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "prism_proxy_errors_total",
		Help: "Calls that ended with a status other than OK, by namespace, method and code."}, []string{"namespace", "method", "code"})
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "prism_proxy_request_duration_seconds",
		Help:    "Call duration at the proxy (unary: request to response; streams: their whole life).",
		Buckets: []float64{50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 1, 5}},
		[]string{"namespace", "method"})
	m.inflight = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "prism_proxy_inflight_calls",
		Help: "Calls and streams being forwarded now, by namespace."}, []string{"namespace"})
	m.restarts = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "prism_proxy_plugin_restarts_total",
		Help: "Restarts of the plugin process serving a namespace slot."}, []string{"namespace", "slot"})
	m.pluginUp = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "prism_proxy_plugin_up",
		Help: "1 when the plugin of a namespace slot is running and started, else 0."}, []string{"namespace", "slot"})
	m.mode = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "prism_proxy_plugin_mode",
		Help: "1 for how the plugin of a namespace slot runs: mode process (a plugin binary) or builtin (a driver linked into the proxy)."},
		[]string{"namespace", "slot", "mode"})
	m.health = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "prism_proxy_plugin_health",
		Help: "The plugin's last HealthCheck answer: 1 for the current status, 0 for the others."},
		[]string{"namespace", "slot", "status"})
	m.draining = prometheus.NewGauge(prometheus.GaugeOpts{Name: "prism_proxy_draining",
		Help: "1 once SIGTERM was received and the proxy is draining."})
	m.healthAll = []string{"healthy", "degraded", "unhealthy", "unknown", "down"}
	m.reg.MustRegister(m.requests, m.errors, m.latency, m.inflight, m.restarts, m.pluginUp, m.mode, m.health, m.draining,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// setHealth marks status as the current health of a namespace slot.
func (m *metrics) setHealth(ns, slot, status string) {
	for _, s := range m.healthAll {
		v := 0.0
		if s == status {
			v = 1
		}
		m.health.WithLabelValues(ns, slot, s).Set(v)
	}
}

// methodMetrics are the resolved series of one namespace and method, so the
// hot path does no label lookups.
type methodMetrics struct {
	requests prometheus.Counter
	latency  prometheus.Observer
	errors   *prometheus.CounterVec
	ns, m    string
}

func (m *metrics) forMethod(ns, method string) *methodMetrics {
	return &methodMetrics{
		requests: m.requests.WithLabelValues(ns, method),
		latency:  m.latency.WithLabelValues(ns, method),
		errors:   m.errors, ns: ns, m: method,
	}
}

func (mm *methodMetrics) fail(c codes.Code) {
	mm.errors.WithLabelValues(mm.ns, mm.m, c.String()).Inc()
}
