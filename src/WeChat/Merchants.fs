/// A merchant's credentials as uploaded: the API key, and the apiclient certificate with its private
/// key (PEM, or a PKCS#12 file). A certificate that does not match its key, is expired or not yet
/// valid is refused with the reason, before anything is stored.
module WeChatFs.Merchants

open System
open System.Security.Cryptography
open System.Security.Cryptography.X509Certificates
open WeChatFs.RedPacks

type Credentials =
    {
        CertificatePem: string
        PrivateKeyPem: string
        Subject: string
        NotAfter: DateTimeOffset
    }

/// Why uploaded credentials are refused; `describeCredentialError` is the text the API answers.
type CredentialError =
    | ApiKeyMissing
    | ApiKeyMalformed
    | CertificateExpired of notAfter: DateTimeOffset
    | CertificateNotYetValid of notBefore: DateTimeOffset
    | NotPemCertificate
    | NotPemPrivateKey
    | KeyMismatch
    | Pkcs12NotBase64
    | Pkcs12Unopenable
    | Pkcs12WithoutKey
    | MchIdMalformed of mchId: string

let describeCredentialError =
    function
    | ApiKeyMissing -> "api_key is required"
    | ApiKeyMalformed -> "api_key must be the 32 letters and digits set in WeChat Pay's console (API安全 → API密钥)"
    | CertificateExpired notAfter ->
        $"the certificate expired on {notAfter:u}; download a new apiclient certificate from WeChat Pay's console"
    | CertificateNotYetValid notBefore -> $"the certificate is not valid before {notBefore:u}"
    | NotPemCertificate -> "certificate_pem is not a PEM certificate (-----BEGIN CERTIFICATE-----)"
    | NotPemPrivateKey -> "private_key_pem is not a PEM private key (-----BEGIN PRIVATE KEY-----)"
    | KeyMismatch ->
        "the certificate does not match the private key: upload the apiclient_cert and apiclient_key of one download"
    | Pkcs12NotBase64 -> "pkcs12_base64 is not base64"
    | Pkcs12Unopenable ->
        "pkcs12_base64 cannot be opened with pkcs12_password (WeChat Pay's default password is the mch_id)"
    | Pkcs12WithoutKey -> "the PKCS#12 file holds no private key"
    | MchIdMalformed mch -> $"'{mch}' is not a merchant id of at most 10 digits"

/// Pay v2 API keys are 32 letters and digits (facts §11.3).
let checkApiKey (key: string) =
    if String.IsNullOrEmpty key then
        Error ApiKeyMissing
    elif key.Length <> 32 || not (key |> Seq.forall Char.IsAsciiLetterOrDigit) then
        Error ApiKeyMalformed
    else
        Ok key

let private isPrivateKey (pem: string) =
    let tryImport (make: unit -> AsymmetricAlgorithm) =
        try
            use k = make ()

            match k with
            | :? RSA as rsa -> rsa.ImportFromPem pem
            | :? ECDsa as ec -> ec.ImportFromPem pem
            | _ -> ()

            true
        with _ ->
            false

    tryImport (fun () -> RSA.Create()) || tryImport (fun () -> ECDsa.Create())

let private validity (now: DateTimeOffset) (cert: X509Certificate2) =
    let notAfter = DateTimeOffset(cert.NotAfter.ToUniversalTime())
    let notBefore = DateTimeOffset(cert.NotBefore.ToUniversalTime())

    if notAfter <= now then
        Error(CertificateExpired notAfter)
    elif notBefore > now then
        Error(CertificateNotYetValid notBefore)
    else
        Ok notAfter

/// Checks a PEM certificate against its PEM private key and the clock.
let ofPem (now: DateTimeOffset) (certificatePem: string) (privateKeyPem: string) =
    let cert =
        try
            Ok(X509Certificate2.CreateFromPem(certificatePem: string))
        with _ ->
            Error NotPemCertificate

    match cert with
    | Error e -> Error e
    | Ok cert ->
        use cert = cert

        if String.IsNullOrWhiteSpace privateKeyPem || not (isPrivateKey privateKeyPem) then
            Error NotPemPrivateKey
        else
            let paired =
                try
                    use p = X509Certificate2.CreateFromPem(certificatePem, privateKeyPem)
                    Ok()
                with _ ->
                    Error KeyMismatch

            match paired with
            | Error e -> Error e
            | Ok() ->
                validity now cert
                |> Result.map (fun notAfter ->
                    {
                        CertificatePem = certificatePem.Trim()
                        PrivateKeyPem = privateKeyPem.Trim()
                        Subject = cert.Subject
                        NotAfter = notAfter
                    })

/// Opens a PKCS#12 file (apiclient_cert.p12; WeChat Pay's default password is the mch_id) and checks
/// it like a PEM pair.
let ofPkcs12 (now: DateTimeOffset) (pkcs12Base64: string) (password: string) =
    let bytes =
        try
            Ok(Convert.FromBase64String pkcs12Base64)
        with _ ->
            Error Pkcs12NotBase64

    match bytes with
    | Error e -> Error e
    | Ok bytes ->
        let opened =
            try
                Ok(X509CertificateLoader.LoadPkcs12(bytes, password, X509KeyStorageFlags.Exportable))
            with _ ->
                Error Pkcs12Unopenable

        match opened with
        | Error e -> Error e
        | Ok cert ->
            use cert = cert

            let key =
                match cert.GetRSAPrivateKey() with
                | null ->
                    match cert.GetECDsaPrivateKey() with
                    | null -> None
                    | ec -> Some(ec.ExportPkcs8PrivateKeyPem())
                | rsa -> Some(rsa.ExportPkcs8PrivateKeyPem())

            match key with
            | None -> Error Pkcs12WithoutKey
            | Some keyPem -> ofPem now (cert.ExportCertificatePem()) keyPem

/// A merchant id that leaves room for the ten digits of a 28-character mch_billno.
let checkMchId (mch: string) =
    if validMchId mch then
        Ok(MchId mch)
    else
        Error(MchIdMalformed mch)
