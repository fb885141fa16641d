/// The OAuth store on SQLite and a real PostgreSQL: routes, followers (refresh token sealed), tracking
/// tokens by hash with expiry, single use of codes, jsapi_tickets sealed, verification files.
module WeChatFs.Tests.OAuthStoreTests

open System
open System.IO
open System.Text
open Expecto
open WeChatFs.Tests.Helpers
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
        OpenId = OpenId openid
        UnionId = None
        Scope = (if Option.isSome profile then SnsapiUserinfo else SnsapiBase)
        Profile = profile
        RefreshToken = refresh
        RefreshExpiresAt = refresh |> Option.map (fun _ -> t0.AddDays 30.)
        FirstSeenAt = t0
        UpdatedAt = t0
    }


let tests =
    testSequencedGroup "OAuthStore"
    <| testList
        "OAuthStore"
        [
            testTheoryTask "routes are created, replaced, listed and deleted" [ "sqlite"; "postgres" ]
            <| fun (provider: string) ->
                task {
                    let! store, _, _ = StoreFixture.openFresh provider
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

                    let! got = oauth.GetFuncKey(FuncKey "card")

                    Expect.equal
                        (got |> Option.map (fun g -> g.Route.Scope))
                        (Some SnsapiUserinfo)
                        "got |> Option.map (fun g -> g.Route.Scope)"

                    Expect.equal
                        (got |> Option.map (fun g -> g.Route.Tenant))
                        (Some None)
                        "got |> Option.map (fun g -> g.Route.Tenant)"

                    Expect.equal
                        (got |> Option.map (fun g -> g.Source))
                        (Some "configuration")
                        "got |> Option.map (fun g -> g.Source)"

                    Expect.equal
                        (got |> Option.map (fun g -> g.Route.Description))
                        (Some(Some "member card"))
                        "got |> Option.map (fun g -> g.Route.Description)"

                    let! all = oauth.ListFuncKeys()
                    Expect.equal all.Length 1 "all.Length"
                    let! deleted = oauth.DeleteFuncKey(FuncKey "card")
                    let! again = oauth.DeleteFuncKey(FuncKey "card")
                    Expect.isTrue deleted "deleted"
                    Expect.isFalse again "again"
                    let! gone = oauth.GetFuncKey(FuncKey "card")
                    Expect.isTrue gone.IsNone "gone.IsNone"
                }

            testTheoryTask
                "a follower keeps the profile through a later silent visit, and the refresh token is sealed"
                [ "sqlite"; "postgres" ]
            <| fun (provider: string) ->
                task {
                    let! store, _, file = StoreFixture.openFresh provider
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
                    let! got = oauth.GetFollower(AuthorizerAppId "wxshop", OpenId "o1")

                    Expect.isTrue got.IsSome "the follower was not stored"
                    let f = got.Value
                    Expect.equal f.Profile (Some profile) "f.Profile"
                    Expect.equal f.UnionId (Some "u1") "f.UnionId"
                    Expect.equal f.Scope SnsapiBase "f.Scope"
                    Expect.equal f.RefreshToken (Some "oauth-refresh-secret-2") "f.RefreshToken"

                    match file with
                    | Some path ->
                        Expect.isFalse
                            ((rawBytes path).Contains("oauth-refresh-secret"))
                            "rawBytes path has no 'oauth-refresh-secret'"
                    | None -> ()

                    let! other = oauth.GetFollower(AuthorizerAppId "wxother", OpenId "o1")
                    Expect.isTrue other.IsNone "other.IsNone"
                }

            testTheoryTask
                "a tracking token resolves by its hash until it expires; a code is claimed once"
                [ "sqlite"; "postgres" ]
            <| fun (provider: string) ->
                task {
                    let! store, _, _ = StoreFixture.openFresh provider
                    use store = store
                    let oauth = OAuthStore.over store
                    let token = trackingToken (Array.init 32 byte)

                    let visit =
                        {
                            AuthorizerAppId = AuthorizerAppId "wxshop"
                            OpenId = OpenId "o1"
                            UnionId = None
                            Tenant = Some(TenantId "t1")
                            FuncKey = FuncKey "card"
                            Scope = SnsapiBase
                            NickName = None
                            HeadImgUrl = None
                            ExpiresAt = t0.AddMinutes 30.
                        }

                    do! oauth.SaveTrackingToken(hashTrackingToken token, visit)
                    let! before = oauth.GetTrackingToken(hashTrackingToken token, t0.AddMinutes 29.)
                    let! byToken = oauth.GetTrackingToken(token, t0)
                    let! after = oauth.GetTrackingToken(hashTrackingToken token, t0.AddMinutes 30.)
                    Expect.equal before (Some visit) "before"
                    Expect.isTrue byToken.IsNone "byToken.IsNone"
                    Expect.isTrue after.IsNone "after.IsNone"
                    let! purged = oauth.PurgeTrackingTokens(t0.AddHours 1., 10)
                    Expect.equal purged 1 "purged"

                    let! first = oauth.ClaimCode(hashCode "code-1", t0)
                    let! second = oauth.ClaimCode(hashCode "code-1", t0.AddSeconds 1.)
                    Expect.isTrue first "first"
                    Expect.isFalse second "second"
                    do! oauth.ReleaseCode(hashCode "code-1")
                    let! third = oauth.ClaimCode(hashCode "code-1", t0.AddSeconds 2.)
                    Expect.isTrue third "third"
                }

            testTheoryTask "jsapi_tickets are kept sealed and verification files by name" [ "sqlite"; "postgres" ]
            <| fun (provider: string) ->
                task {
                    let! store, _, file = StoreFixture.openFresh provider
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

                    Expect.equal
                        (t |> Option.map (fun t -> t.Token))
                        (Some "jsapi-ticket-secret")
                        "t |> Option.map (fun t -> t.Token)"

                    match file with
                    | Some path ->
                        Expect.isFalse
                            ((rawBytes path).Contains("jsapi-ticket-secret"))
                            "rawBytes path has no 'jsapi-ticket-secret'"
                    | None -> ()

                    do! oauth.PutVerificationFile("MP_verify_a.txt", "abc", t0)
                    do! oauth.PutVerificationFile("MP_verify_a.txt", "def", t0)
                    do! oauth.PutVerificationFile("MP_verify_b.txt", "xyz", t0)
                    let! a = oauth.GetVerificationFile "MP_verify_a.txt"
                    Expect.equal a (Some "def") "a"
                    let! all = oauth.ListVerificationFiles()

                    Expect.equal
                        (all |> List.map (fun f -> f.Name))
                        ([ "MP_verify_a.txt"; "MP_verify_b.txt" ])
                        "all |> List.map (fun f -> f.Name)"

                    let! deleted = oauth.DeleteVerificationFile "MP_verify_a.txt"
                    Expect.isTrue deleted "deleted"
                    let! gone = oauth.GetVerificationFile "MP_verify_a.txt"
                    Expect.isTrue gone.IsNone "gone.IsNone"
                }

        ]
