extension ProxyConfiguration {
    /// `[ui]`: the web dashboard under `/ui` (README "Dashboard").
    public struct UI: Sendable {
        /// Serve `/ui` (same access rule as the memory API). Env `MEMPROXY_UI_ENABLED`.
        public var enabled = true
    }

    static let uiKeys: [Key] = [
        Key(section: "ui", name: "enabled") { config, raw throws(ConfigurationError) in
            config.ui.enabled = try raw.bool("ui.enabled")
        }
    ]
}
