/// The OAuth store on SQLite and a real PostgreSQL: routes, followers (refresh token sealed), tracking
/// tokens by hash with expiry, single use of codes, jsapi_tickets sealed, verification files.
module WeChatFs.Tests.OAuthStoreTests

open System
open System.IO
open System.Text
open Xunit
open WeChatFs
open WeChatFs.Domain
open WeChatFs.OAuth
open WeChatFs.OAuthStore

let private t0 = DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero)

/// The SQLite file and its write-ahead log, as raw text.
let private rawBytes (file: string) =
    [ file; file + "-wal" ]
    |> List.filter File.Exists
    |> List.map (File.ReadAllBytes >> Encoding.Latin1.GetString)
    |> String.concat ""

let private follower openid profile refresh =
    {
        AuthorizerAppId = AuthorizerAppId "wxshop"
        OpenId = openid
        UnionId = None
        Scope = (if Option.isSome profile then SnsapiUserinfo else SnsapiBase)
        Profile = profile
        RefreshToken = refresh
        RefreshExpiresAt = refresh |> Option.map (fun _ -> t0.AddDays 30.)
        FirstSeenAt = t0
        UpdatedAt = t0
    }

[<Theory; InlineData("sqlite"); InlineData("postgres")>]
let ``routes are created, replaced, listed and deleted`` (provider: string) =
    task {
        let! store, _, _ = SqlStoreTests.openFresh provider
        use store = store
        let oauth = OAuthStore.over store

        let r =
            match route "card" "https://shop.example.com/m" "snsapi_base" "member card" "t1" with
            | Ok r -> r
            | Error e -> failwith e.Problem

        do! oauth.SaveFuncKey(r, "api", t0)

        do!
            oauth.SaveFuncKey(
                { r with
                    Scope = SnsapiUserinfo
                    Tenant = None
                },
                "configuration",
                t0.AddMinutes 1.
            )

        let! got = oauth.GetFuncKey "card"
        Assert.Equal(Some SnsapiUserinfo, got |> Option.map (fun g -> g.Route.Scope))
        Assert.Equal(Some None, got |> Option.map (fun g -> g.Route.Tenant))
        Assert.Equal(Some "configuration", got |> Option.map (fun g -> g.Source))
        Assert.Equal(Some(Some "member card"), got |> Option.map (fun g -> g.Route.Description))
        let! all = oauth.ListFuncKeys()
        Assert.Equal(1, all.Length)
        let! deleted = oauth.DeleteFuncKey "card"
        let! again = oauth.DeleteFuncKey "card"
        Assert.True deleted
        Assert.False again
        let! gone = oauth.GetFuncKey "card"
        Assert.True gone.IsNone
    }

[<Theory; InlineData("sqlite"); InlineData("postgres")>]
let ``a follower keeps the profile through a later silent visit, and the refresh token is sealed`` (provider: string) =
    task {
        let! store, _, file = SqlStoreTests.openFresh provider
        use store = store
        let oauth = OAuthStore.over store

        let profile =
            {
                NickName = "张三"
                Sex = 1
                Province = "广东"
                City = "深圳"
                Country = "中国"
                HeadImgUrl = "https://img.example.com/1"
                Privilege = [ "chinaunicom" ]
            }

        do!
            oauth.SaveFollower
                { follower "o1" (Some profile) (Some "oauth-refresh-secret-1") with
                    UnionId = Some "u1"
                }

        do! oauth.SaveFollower(follower "o1" None (Some "oauth-refresh-secret-2"))
        let! got = oauth.GetFollower(AuthorizerAppId "wxshop", "o1")

        Assert.True(got.IsSome, "the follower was not stored")
        let f = got.Value
        Assert.Equal(Some profile, f.Profile)
        Assert.Equal(Some "u1", f.UnionId)
        Assert.Equal(SnsapiBase, f.Scope)
        Assert.Equal(Some "oauth-refresh-secret-2", f.RefreshToken)

        match file with
        | Some path -> Assert.DoesNotContain("oauth-refresh-secret", rawBytes path)
        | None -> ()

        let! other = oauth.GetFollower(AuthorizerAppId "wxother", "o1")
        Assert.True other.IsNone
    }

[<Theory; InlineData("sqlite"); InlineData("postgres")>]
let ``a tracking token resolves by its hash until it expires; a code is claimed once`` (provider: string) =
    task {
        let! store, _, _ = SqlStoreTests.openFresh provider
        use store = store
        let oauth = OAuthStore.over store
        let token = trackingToken (Array.init 32 byte)

        let visit =
            {
                AuthorizerAppId = AuthorizerAppId "wxshop"
                OpenId = "o1"
                UnionId = None
                Tenant = Some(TenantId "t1")
                FuncKey = "card"
                Scope = SnsapiBase
                NickName = None
                HeadImgUrl = None
                ExpiresAt = t0.AddMinutes 30.
            }

        do! oauth.SaveTrackingToken(hashTrackingToken token, visit)
        let! before = oauth.GetTrackingToken(hashTrackingToken token, t0.AddMinutes 29.)
        let! byToken = oauth.GetTrackingToken(token, t0)
        let! after = oauth.GetTrackingToken(hashTrackingToken token, t0.AddMinutes 30.)
        Assert.Equal(Some visit, before)
        Assert.True byToken.IsNone
        Assert.True after.IsNone
        let! purged = oauth.PurgeTrackingTokens(t0.AddHours 1., 10)
        Assert.Equal(1, purged)

        let! first = oauth.ClaimCode(hashCode "code-1", t0)
        let! second = oauth.ClaimCode(hashCode "code-1", t0.AddSeconds 1.)
        Assert.True first
        Assert.False second
        do! oauth.ReleaseCode(hashCode "code-1")
        let! third = oauth.ClaimCode(hashCode "code-1", t0.AddSeconds 2.)
        Assert.True third
    }

[<Theory; InlineData("sqlite"); InlineData("postgres")>]
let ``jsapi_tickets are kept sealed and verification files by name`` (provider: string) =
    task {
        let! store, _, file = SqlStoreTests.openFresh provider
        use store = store
        let oauth = OAuthStore.over store

        do!
            oauth.SaveJsApiTicket(
                AuthorizerAppId "wxshop",
                {
                    Token = "jsapi-ticket-secret"
                    ExpiresAt = t0.AddHours 2.
                }
            )

        let! t = oauth.JsApiTicket(AuthorizerAppId "wxshop")
        Assert.Equal(Some "jsapi-ticket-secret", t |> Option.map (fun t -> t.Token))

        match file with
        | Some path -> Assert.DoesNotContain("jsapi-ticket-secret", rawBytes path)
        | None -> ()

        do! oauth.PutVerificationFile("MP_verify_a.txt", "abc", t0)
        do! oauth.PutVerificationFile("MP_verify_a.txt", "def", t0)
        do! oauth.PutVerificationFile("MP_verify_b.txt", "xyz", t0)
        let! a = oauth.GetVerificationFile "MP_verify_a.txt"
        Assert.Equal(Some "def", a)
        let! all = oauth.ListVerificationFiles()
        Assert.Equal<string list>([ "MP_verify_a.txt"; "MP_verify_b.txt" ], all |> List.map (fun f -> f.Name))
        let! deleted = oauth.DeleteVerificationFile "MP_verify_a.txt"
        Assert.True deleted
        let! gone = oauth.GetVerificationFile "MP_verify_a.txt"
        Assert.True gone.IsNone
    }
