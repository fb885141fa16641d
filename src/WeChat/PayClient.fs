/// WeChat Pay v2 over mutual TLS: one HTTP client per merchant certificate, the server checked against
/// `WeChatFs:WeChat:PayServerCaCertificate` when given (the system's trust store otherwise), XML in and
/// out, signed with the merchant's API key. Every failure is a value; none of them says "not paid".
module WeChatFs.PayClient

open System
open System.Collections.Concurrent
open System.Net.Http
open System.Net.Security
open System.Security.Cryptography.X509Certificates
open System.Text
open System.Threading.Tasks
open WeChatFs.Config
open WeChatFs.Settings
open WeChatFs.RedPacks
open WeChatFs.RedPackStore

/// The merchant's certificate with its private key, usable as a TLS client certificate everywhere
/// (a PKCS#12 round trip gives the key a form every platform's TLS stack accepts).
let clientCertificate (certificatePem: string) (privateKeyPem: string) =
    use pem = X509Certificate2.CreateFromPem(certificatePem, privateKeyPem)
    X509CertificateLoader.LoadPkcs12(pem.Export X509ContentType.Pkcs12, null)

/// Why a call to WeChat Pay gave no answer to read. None of them means "not paid": the caller
/// records the outcome as unknown and asks again later.
type PayCallError =
    /// An HTTP status other than success.
    | PayHttpStatus of status: int
    /// A body that is not WeChat Pay's XML.
    | PayUnreadable of Wire.WireError
    /// The connection failed or broke.
    | PayConnection of message: string
    /// No answer within `WeChatFs:RedPacks:SendTimeout`.
    | PayTimedOut

/// The reason recorded with an unknown outcome.
let describePayCallError =
    function
    | PayHttpStatus status -> $"HTTP {status}"
    | PayUnreadable e -> Wire.describe e
    | PayConnection message -> $"connection: {message}"
    | PayTimedOut -> "timed out"

type Client(options: GatewayOptions) =
    let trustedCa =
        options.PayServerCaCertificate
        |> Option.map (fun path -> X509Certificate2.CreateFromPem(IO.File.ReadAllText path))

    let clients = ConcurrentDictionary<string, Lazy<HttpClient>>()

    let validateServer (certificate: X509Certificate) (errors: SslPolicyErrors) =
        match trustedCa with
        | None -> errors = SslPolicyErrors.None
        | Some ca when
            errors.HasFlag SslPolicyErrors.RemoteCertificateNameMismatch
            || errors.HasFlag SslPolicyErrors.RemoteCertificateNotAvailable
            ->
            ignore ca
            false
        | Some ca ->
            use chain = new X509Chain()
            chain.ChainPolicy.TrustMode <- X509ChainTrustMode.CustomRootTrust
            chain.ChainPolicy.CustomTrustStore.Add ca |> ignore
            chain.ChainPolicy.RevocationMode <- X509RevocationMode.NoCheck
            use leaf = X509CertificateLoader.LoadCertificate(certificate.GetRawCertData())
            chain.Build leaf

    let build (m: Merchant) =
        let cert = clientCertificate m.CertificatePem m.PrivateKeyPem
        let ssl = SslClientAuthenticationOptions()
        ssl.ClientCertificates <- X509CertificateCollection [| cert :> X509Certificate |]
        // Always offer the merchant's certificate, whatever issuers the server lists.
        ssl.LocalCertificateSelectionCallback <- LocalCertificateSelectionCallback(fun _ _ _ _ _ -> cert)

        ssl.RemoteCertificateValidationCallback <-
            RemoteCertificateValidationCallback(fun _ certificate _ errors ->
                not (isNull certificate) && validateServer certificate errors)

        let handler =
            new SocketsHttpHandler(
                SslOptions = ssl,
                AllowAutoRedirect = false,
                PooledConnectionLifetime = TimeSpan.FromMinutes 5.
            )

        new HttpClient(handler, Timeout = options.RedPacks.SendTimeout)

    let clientFor (m: Merchant) =
        let key = PayIds.mchId m.MchId + "|" + m.CertificatePem.GetHashCode().ToString()
        clients.GetOrAdd(key, (fun _ -> lazy (build m))).Value

    /// POSTs the signed fields to `path` under PayBaseUrl; Ok with the answer's fields.
    member _.Post
        (m: Merchant, path: string, fields: (string * string) list)
        : Task<Result<Map<string, string>, PayCallError>> =
        task {
            let signed = fields @ [ "sign", sign m.ApiKey fields ]
            let url = Uri(options.PayBaseUrl.ToString().TrimEnd('/') + path)

            try
                use content = new StringContent(toXml signed, Encoding.UTF8, "text/xml")
                use! response = (clientFor m).PostAsync(url, content)
                let! body = response.Content.ReadAsStringAsync()

                if not response.IsSuccessStatusCode then
                    return Error(PayHttpStatus(int response.StatusCode))
                else
                    match Wire.readXml body with
                    | Ok map -> return Ok map
                    | Error e -> return Error(PayUnreadable e)
            with
            | :? HttpRequestException as ex -> return Error(PayConnection ex.Message)
            | :? TaskCanceledException -> return Error PayTimedOut
            | :? IO.IOException as ex -> return Error(PayConnection ex.Message)
        }

    /// sendredpack (facts §11.1).
    member this.SendRedPack(m: Merchant, fields: (string * string) list) =
        task {
            match! this.Post(m, "/mmpaymkttransfers/sendredpack", fields) with
            | Ok answer -> return sendOutcome answer
            | Error e -> return Unknown(describePayCallError e)
        }

    /// gethbinfo (facts §11.2).
    member this.GetHbInfo(m: Merchant, appid: string, MchBillNo bill, nonce: string) =
        task {
            let fields =
                [
                    "nonce_str", nonce
                    "mch_billno", bill
                    "mch_id", PayIds.mchId m.MchId
                    "appid", appid
                    "bill_type", "MCHT"
                ]

            match! this.Post(m, "/mmpaymkttransfers/gethbinfo", fields) with
            | Ok answer -> return queryOutcome options.RedPacks.NotFoundCodes answer
            | Error e -> return QueryUnknown(describePayCallError e)
        }
