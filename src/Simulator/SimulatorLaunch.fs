/// Starting the simulator from C# (the demo executable): settings as plain properties, the URLs of a
/// gateway derived from its base URL, and no F# type in the signatures.
namespace WeChatFs.Simulator

open System
open System.Threading.Tasks
open WeChatFs.Simulator.SimModel
open WeChatFs.Simulator.SimState

/// What the simulator stands in for: the platform's credentials (the simulator's defaults unless set)
/// and the gateway it pushes to.
[<Sealed>]
type SimulatorSettings() =
    /// The platform's AppID the simulated WeChat knows.
    member val ComponentAppId = SimulatorOptions.defaults.ComponentAppId with get, set
    /// The platform's AppSecret.
    member val ComponentAppSecret = SimulatorOptions.defaults.ComponentAppSecret with get, set
    /// The message verification token.
    member val Token = SimulatorOptions.defaults.Token with get, set
    /// The EncodingAESKey (43 characters).
    member val EncodingAesKey = SimulatorOptions.defaults.EncodingAesKey with get, set
    /// The gateway's base URL, e.g. http://127.0.0.1:5080; null = push nothing.
    member val GatewayUrl: string = null with get, set
    /// How often a component_verify_ticket is pushed (WeChat: every 10 minutes).
    member val TicketInterval = TimeSpan.FromMinutes 10. with get, set
    /// Where the simulator listens.
    member val Url = "http://127.0.0.1:5081" with get, set

/// Starts simulators.
[<AbstractClass; Sealed>]
type SimulatorLauncher =
    /// Starts a simulator with <paramref name="settings"/>; dispose the result to stop it.
    static member StartAsync(settings: SimulatorSettings) : Task<SimulatorHost.RunningSimulator> =
        let gateway =
            settings.GatewayUrl |> Option.ofObj |> Option.map (fun g -> g.TrimEnd '/')

        let options =
            { SimulatorOptions.defaults with
                ComponentAppId = settings.ComponentAppId
                ComponentAppSecret = settings.ComponentAppSecret
                Token = settings.Token
                EncodingAesKey = settings.EncodingAesKey
                EventUrl = gateway |> Option.map (fun g -> g + "/wechat/component/events")
                MessageUrlTemplate = gateway |> Option.map (fun g -> g + "/wechat/authorizers/$APPID$/callback")
                TicketInterval = settings.TicketInterval
                AutoPushTickets = true
            }

        SimulatorHost.start options settings.Url
