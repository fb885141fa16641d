/// The simulated WeChat Pay's certificates: a throwaway test CA made at start, a server certificate
/// for 127.0.0.1/localhost, and one client certificate per merchant (the apiclient_cert WeChat Pay's
/// console hands out), all issued by that CA. Nothing here is trusted outside the simulator's tests.
module WeChatFs.Simulator.SimPayCerts

open System
open System.Net
open System.Security.Cryptography
open System.Security.Cryptography.X509Certificates

/// A PKCS#12 round trip gives the key a form every platform's TLS stack accepts.
let private usable (cert: X509Certificate2) =
    X509CertificateLoader.LoadPkcs12(cert.Export X509ContentType.Pkcs12, null, X509KeyStorageFlags.Exportable)

let private request (subject: string) (key: RSA) =
    CertificateRequest(X500DistinguishedName subject, key, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1)

let private serial () = RandomNumberGenerator.GetBytes 12

type Authority() =
    let caKey = RSA.Create 2048
    let now = DateTimeOffset.UtcNow

    let ca =
        let req = request "CN=WeChatFs Simulator Test CA, O=WeChatFs Simulator" caKey
        req.CertificateExtensions.Add(X509BasicConstraintsExtension(true, false, 0, true))

        req.CertificateExtensions.Add(
            X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign ||| X509KeyUsageFlags.CrlSign, true)
        )

        req.CertificateExtensions.Add(X509SubjectKeyIdentifierExtension(req.PublicKey, false))
        usable (req.CreateSelfSigned(now.AddDays -1., now.AddYears 5))

    let issue (subject: string) (usage: string) (sans: SubjectAlternativeNameBuilder option) (lifetime: TimeSpan) =
        use key = RSA.Create 2048
        let req = request subject key
        req.CertificateExtensions.Add(X509BasicConstraintsExtension(false, false, 0, true))

        req.CertificateExtensions.Add(
            X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature ||| X509KeyUsageFlags.KeyEncipherment, true)
        )

        let usages = OidCollection()
        usages.Add(Oid usage) |> ignore
        req.CertificateExtensions.Add(X509EnhancedKeyUsageExtension(usages, false))

        req.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(ca, true, false))
        sans |> Option.iter (fun b -> req.CertificateExtensions.Add(b.Build()))
        let from = DateTimeOffset.UtcNow.AddMinutes -5.
        use signed = req.Create(ca, from, from + lifetime, serial ())
        use withKey = signed.CopyWithPrivateKey key
        usable withKey

    let server =
        let sans = SubjectAlternativeNameBuilder()
        sans.AddIpAddress IPAddress.Loopback
        sans.AddDnsName "localhost"
        issue "CN=127.0.0.1" "1.3.6.1.5.5.7.3.1" (Some sans) (TimeSpan.FromDays 365.)

    member _.CaCertificate = ca
    member _.CaPem = ca.ExportCertificatePem()
    member _.ServerCertificate = server

    /// A merchant's apiclient certificate (CN = mch_id), valid for `lifetime`.
    member _.IssueMerchant(mchId: string, lifetime: TimeSpan) =
        issue $"CN={mchId}, O=WeChatFs Simulator Merchant, OU=WeChat Pay" "1.3.6.1.5.5.7.3.2" None lifetime

    /// Whether `cert` was issued by this CA (and is within its validity).
    member _.Issued(cert: X509Certificate2) =
        use chain = new X509Chain()
        chain.ChainPolicy.TrustMode <- X509ChainTrustMode.CustomRootTrust
        chain.ChainPolicy.CustomTrustStore.Add ca |> ignore
        chain.ChainPolicy.RevocationMode <- X509RevocationMode.NoCheck
        chain.Build cert

/// PEM of a certificate and of its private key.
let pemPair (cert: X509Certificate2) =
    let key = cert.GetRSAPrivateKey()
    cert.ExportCertificatePem(), key.ExportPkcs8PrivateKeyPem()
