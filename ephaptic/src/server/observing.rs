//! What the server shows of itself on its own port: the Prometheus metrics and the inspector
//! page, and who may read them.

use super::Server;

impl Server {
    /// Serves the server's metrics in the Prometheus text format at `path` on the server's own
    /// HTTP port (off by default): calls by function and code with a latency histogram per
    /// function, events sent by kind, resumes by outcome, resyncs, sessions ended, Redis
    /// publish latency, and every figure of [`metrics`](crate::metrics). No label is an
    /// identity, a group or anything a client chose. Only loopback peers may read it, unless
    /// [`metrics_public`](Self::metrics_public); to serve it on a port of your own, read
    /// [`ephaptic::prometheus_text`](crate::prometheus_text) there. Guide: docs/OBSERVABILITY.md.
    ///
    /// ```
    /// let server = ephaptic::Server::new().metrics_endpoint("/metrics");
    /// ```
    pub fn metrics_endpoint(mut self, path: impl Into<String>) -> Self {
        self.config.metrics_path = Some(path.into());
        self
    }

    /// Whether peers other than loopback may read [`metrics_endpoint`](Self::metrics_endpoint)
    /// (default no: a scraper on another machine is let in by your network rules, not by
    /// default).
    pub fn metrics_public(mut self, yes: bool) -> Self {
        self.config.metrics_remote = yes;
        self
    }

    /// Samples the calls that get a span, as OpenTelemetry's parent-based ratio sampler does
    /// (by default every call gets one, when a subscriber enables them; docs/OBSERVABILITY.md):
    /// a call whose client sent a `traceparent` gets a span when that trace is sampled (its
    /// flag), and a call without one gets a span with probability `ratio` (one call in
    /// `1 / ratio`, counted per thread). A call without a span still runs, is counted in the
    /// metrics and shown by the inspector; it costs the subscriber nothing.
    ///
    /// A subscriber's span costs more than a call answered in a batch (the registry alone
    /// adds about 0.15 µs to a call of under a microsecond, BENCHMARKS.md): sampling is how a
    /// busy server keeps traces and its speed, and an exporter that samples on its own still
    /// pays the registry for the spans it drops.
    ///
    /// ```
    /// // One call in ten without a client's trace; every call of a sampled client trace.
    /// let server = ephaptic::Server::new().sample_calls(0.1);
    /// ```
    ///
    /// # Panics
    ///
    /// When `ratio` is not between 0 and 1.
    pub fn sample_calls(mut self, ratio: f64) -> Self {
        self.config.sampling = crate::runtime::spans::Sampling::ratio(ratio);
        self
    }

    /// Serves an inspector page at `path` on the server's own HTTP port (off by default): one
    /// HTML page with its script and style inline (no build step, nothing fetched from
    /// elsewhere, a strict Content-Security-Policy), which polls the server every second and
    /// shows, live:
    ///
    /// - connections (id, identity, peer, groups, queued frames, calls running), identities
    ///   and groups (name, members), each list cut at 500 rows with how many more there are;
    /// - presence: the groups this server's connections track themselves in, with members,
    ///   connections and watchers;
    /// - streams and their positions (stream, epoch, top offset, events kept) when the history
    ///   is in memory; that they are kept in Redis with a backplane;
    /// - per function: calls per second over the last second, errors, mean latency;
    /// - a live trace of one identity: type its key (`s:alice`, `i:7`) and see what its
    ///   connections call (function, id, time) and are sent (events, answers with their code,
    ///   sizes), newest first. Never a value: arguments, results and payloads are not kept.
    ///
    /// Beside the page, `path/state` is the same snapshot as JSON, and
    /// `path/trace?identity=<key>` an identity's trace (the last 200 frames; at most 4
    /// identities traced at once; a trace nobody polls for 30 s ends). Connections nobody traces
    /// pay one relaxed atomic load per message read and per batch of writes; functions count
    /// their calls with two relaxed atomic adds more (the inspector turns on the same counters
    /// as [`metrics_endpoint`](Self::metrics_endpoint)).
    ///
    /// Who may read it: loopback peers asking for a loopback host name (or one listed in
    /// [`allowed_hosts`](Self::allowed_hosts)) and not through a proxy, unless
    /// [`inspector_token`](Self::inspector_token) is set; others get 403 with how to get in. Open
    /// `http://127.0.0.1:<port><path>` on the server's machine, or through an SSH tunnel.
    /// Guide: docs/OBSERVABILITY.md.
    ///
    /// ```
    /// let server = ephaptic::Server::new().inspector("/_inspect");
    /// // Then, on the server's machine: http://127.0.0.1:8000/_inspect
    /// ```
    ///
    /// # Panics
    /// When the server starts, if `path` (or `path/state`, `path/trace`) is another route's
    /// (the WebSocket endpoint, the metrics endpoint), or does not start with `/`.
    pub fn inspector(mut self, path: impl Into<String>) -> Self {
        self.config.inspector_path = Some(path.into());
        self
    }

    /// Lets any peer read the [`inspector`](Self::inspector) that presents `token`, in an
    /// `Authorization: Bearer <token>` header (the page may be opened as `path?token=<token>`:
    /// its script sends the header, and forgets the token with the tab). With a token, every
    /// peer needs it, loopback ones too: behind a reverse proxy on the same machine, every
    /// request comes from loopback. Use a long random token, and serve the page over HTTPS
    /// (your proxy's) beyond this machine. An empty token is no token.
    ///
    /// ```
    /// let token = std::env::var("INSPECTOR_TOKEN").unwrap_or_default();
    /// let mut server = ephaptic::Server::new();
    /// if !token.is_empty() {
    ///     server = server.inspector("/_inspect").inspector_token(token);
    /// }
    /// ```
    pub fn inspector_token(mut self, token: impl Into<String>) -> Self {
        self.config.inspector_token = Some(token.into());
        self
    }
}
