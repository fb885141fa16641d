/// The simulator's settings: the platform's credentials and keys, the gateway's URLs, and the
/// lifetimes the facts file leaves open ([U]). Opened with the namespace, so that every file and
/// test reading SimulatorOptions finds it where it always was.
[<AutoOpen>]
module WeChatFs.Simulator.SimOptions

open System

type SimulatorOptions =
    {
        ComponentAppId: string
        ComponentAppSecret: string
        Token: string
        EncodingAesKey: string
        /// The gateway's authorization event URL; None = nothing is pushed.
        EventUrl: string option
        /// The gateway's message URL with the `$APPID$` placeholder (facts §5).
        MessageUrlTemplate: string option
        /// Ticket pushes: every 10 minutes on WeChat (facts §1.1); seconds in the demo.
        TicketInterval: TimeSpan
        /// pre_auth_code lifetime: 600 s in the docs' example, 1800 s in newer text (facts §3.2, [U]).
        PreAuthCodeLifetime: TimeSpan
        /// auth_code lifetime on the redirect (facts §4.3, example 600 s).
        AuthCodeLifetime: TimeSpan
        /// WeChat refuses the authorization page unless opened from the registered domain (facts §4.1).
        RequireReferer: bool
        /// Push tickets by itself (at start, then every TicketInterval); tests may push only on demand.
        AutoPushTickets: bool
    }

module SimulatorOptions =
    let defaults =
        {
            ComponentAppId = "wxsimcomponent0001"
            ComponentAppSecret = "sim-app-secret-0001"
            Token = "sim_token"
            EncodingAesKey = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"
            EventUrl = None
            MessageUrlTemplate = None
            TicketInterval = TimeSpan.FromMinutes 10.
            PreAuthCodeLifetime = TimeSpan.FromSeconds 600.
            AuthCodeLifetime = TimeSpan.FromSeconds 600.
            RequireReferer = true
            AutoPushTickets = true
        }
