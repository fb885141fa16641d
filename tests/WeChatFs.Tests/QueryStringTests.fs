/// The query reader of the push endpoints against ASP.NET Core's own query parsing, which it stands
/// in for: the same value for every field of any query, or a way back to that parsing.
module WeChatFs.Tests.QueryStringTests

open Expecto
open FsCheck
open FsCheck.FSharp
open Microsoft.AspNetCore.Http
open WeChatFs.QueryString
open WeChatFs.Tests.Helpers

let private names =
    [
        "timestamp"
        "nonce"
        "NONCE"
        "msg_signature"
        "signature"
        "encrypt_type"
        "x"
        ""
    ]

/// Queries as WeChat sends them and near misses: fields repeated, without '=', empty, with '=' in
/// the value, escapes, spaces and non-ASCII text; as a request's query string is: empty, or '?' first.
let private nearWeChatQuery =
    let value =
        Gen.elements [ ""; "1700000000"; "abc"; "a=b"; "中文"; "a b"; "%41"; "a+b"; "%zz"; "?"; " " ]

    let field =
        Gen.oneof
            [
                Gen.map2 (fun (n: string) (v: string) -> n + "=" + v) (Gen.elements names) value
                Gen.elements names
                Gen.constant ""
            ]

    Gen.listOf field
    |> Gen.map (fun fields ->
        if fields.IsEmpty then
            ""
        else
            "?" + String.concat "&" fields)

/// What the handlers read before: the request's query collection.
let private aspNetCore (query: string) (name: string) =
    let ctx = DefaultHttpContext()
    ctx.Request.QueryString <- QueryString query
    string ctx.Request.Query[name]

let tests =
    testList
        "QueryString"
        [
            testProp
                "every field reads as ASP.NET Core's query collection gives it, or is left to it"
                (Prop.forAll (Arb.fromGen nearWeChatQuery) (fun (query: string) ->
                    names
                    |> List.filter ((<>) "")
                    |> List.forall (fun name ->
                        match tryPlainValue query name with
                        | ValueSome v -> v = aspNetCore query name
                        | ValueNone -> query.Contains '%' || query.Contains '+')))

            testCase "a push's query"
            <| fun () ->
                let query =
                    "?signature=5c8c&timestamp=1700000000&nonce=42&openid=o1&encrypt_type=aes&msg_signature=9f0e"

                Expect.equal (tryPlainValue query "timestamp") (ValueSome "1700000000") "timestamp"
                Expect.equal (tryPlainValue query "msg_signature") (ValueSome "9f0e") "msg_signature"
                Expect.equal (tryPlainValue query "echostr") (ValueSome "") "absent"
                Expect.equal (tryPlainValue "" "nonce") (ValueSome "") "empty query"
                Expect.equal (tryPlainValue "?nonce=a%20b" "nonce") ValueNone "an escape is left to ASP.NET Core"
        ]
