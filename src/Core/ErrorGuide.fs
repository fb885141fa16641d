/// What WeChat's errcodes mean and what to do about them (facts §12, §9, §2.5), for problem details,
/// the status page and `wechatfs explain <code>`.
module WeChatFs.ErrorGuide

type Entry =
    {
        Code: int
        Meaning: string
        Action: string
        /// Whether calling again (after the action, e.g. a token refresh) can succeed.
        Retry: bool
    }

let private e code meaning action retry =
    {
        Code = code
        Meaning = meaning
        Action = action
        Retry = retry
    }

let all: Entry list =
    [
        e -1 "WeChat is busy" "retry with backoff, a few times at most" true
        e 0 "success" "nothing to do" false
        e
            40001
            "the token is invalid or no longer the latest (from api_component_token: wrong AppSecret)"
            "refresh the token that was used and retry once; if it came from api_component_token, check WeChatFs:Component:AppSecret"
            true
        e 40013 "invalid appid" "check the appid in the configuration or the request; retrying does not help" false
        e 40014 "invalid access_token" "refresh the token and retry once" true
        e 40029 "invalid web OAuth code" "start web OAuth again; a code is never retried" false
        e 40163 "web OAuth code already used" "start web OAuth again; a code is used once" false
        e
            40090
            "request from an unexpected client IP (reported by one SDK only)"
            "treat as an IP whitelist problem"
            false
        e 40097 "invalid arguments" "fix the request" false
        e 40125 "invalid AppSecret" "fix WeChatFs:Component:AppSecret" false
        e 41001 "access_token missing" "a bug in the caller: the token was not attached" false
        e 41004 "AppSecret missing" "set WeChatFs:Component:AppSecret" false
        e 42001 "access_token expired" "refresh the token and retry once" true
        e 42002 "web OAuth refresh_token expired (30 days)" "run web OAuth again" false
        e 42007 "the user changed the password; OAuth tokens are void" "run web OAuth again" false
        e 43004 "the user must follow the account" "only followers can receive this" false
        e 44002 "empty POST body" "send a body, at least {}" false
        e 45009 "daily API quota reached" "stop calling and alert; clear_quota resets it (10 times a month)" false
        e
            45015
            "customer-service window expired (48 h) or the user unsubscribed"
            "drop the message or use a template message"
            false
        e 45047 "too many customer-service messages in this window" "stop sending until the user writes again" false
        e 47001 "the JSON or XML body could not be parsed" "fix the request body" false
        e
            48001
            "API not authorized for this account (capability missing or wrong token type)"
            "check the account type and verification; do not retry"
            false
        e 48006 "clear_quota used up for this month" "wait for next month" false
        e
            61003
            "the account no longer authorizes this platform"
            "mark it revoked; the merchant must authorize again"
            false
        e
            61004
            "the caller's IP is not on the platform's whitelist"
            "add this server's egress IP to the whitelist in WeChat's console"
            false
        e
            61005
            "component_verify_ticket expired"
            "wait for the next ticket push (every 10 minutes) or call api_start_push_ticket"
            false
        e 61006 "component_verify_ticket invalid" "use the latest ticket; wait for the next push" false
        e
            61007
            "the API's permission set was not granted by the account"
            "ask the merchant to authorize again with that permission set"
            false
        e 61009 "authorization code invalid" "start the authorization again for a new code" false
        e 61010 "authorization code expired" "start the authorization again" false
        e 61011 "invalid component (third-party platform)" "check WeChatFs:Component:AppId" false
        e
            61016
            "the permission set needs the merchant's confirmation"
            "the merchant must confirm the permission set; do not retry"
            false
        e
            61023
            "authorizer_refresh_token invalid"
            "reload it from api_get_authorizer_list; if that fails the merchant must authorize again"
            false
        e 61024 "component accounts must use api_component_token" "use the component token API" false
        e 61039 "code scan not finished after commit" "wait for the scan, then submit again" true
        e 61040 "privacy APIs used but not declared in ext_json" "declare them and commit again" false
        e 85001 "no such WeChat id for a tester" "check the WeChat id" false
        e 85002 "tester limit reached" "remove a tester first" false
        e 85003 "this WeChat id is bound as tester too often" "use another WeChat id" false
        e 85004 "already bound as tester" "nothing to do" false
        e 85006 "audit tag format invalid" "fix the tags" false
        e 85007 "audit page path invalid" "fix the page path" false
        e 85008 "audit category invalid" "use a category configured for the mini program" false
        e 85009 "an audit is already in progress" "wait for it or withdraw it" false
        e 85010 "an item_list entry is empty" "fill in every audit item" false
        e 85011 "audit title invalid" "fix the title" false
        e 85012 "invalid auditid" "use an auditid returned by submit_audit" false
        e 85013 "invalid custom configuration" "fix ext_json" false
        e 85014 "template id does not exist" "use an id from the template library" false
        e 85015 "not a mini program account" "call this only for mini programs" false
        e 85016 "too many domains" "remove domains first" false
        e
            85017
            "no domain added, or the domain is not registered on the platform"
            "register the domain on the third-party platform first"
            false
        e 85018 "domain not set on the third-party platform" "set it in the platform's console first" false
        e 85019 "no audited version to release" "wait for an approved audit" false
        e 85020 "the audit status does not allow release" "check the latest audit status" false
        e
            85021
            "an audit, commit or domain error of code management"
            "fix the input; see WeChat's code-management documentation"
            false
        e
            85022
            "an audit, commit or domain error of code management"
            "fix the input; see WeChat's code-management documentation"
            false
        e 85023 "audit item count must be 1 to 5" "send between one and five items" false
        e 85043 "template error" "check the template" false
        e 85044 "code package too large" "make the package smaller" false
        e 85045 "a path in ext_json does not exist" "fix ext_json" false
        e 85046 "tabBar lacks a path" "fix ext_json's tabBar" false
        e 85047 "pages are empty" "add pages" false
        e 85048 "ext_json could not be parsed" "send ext_json as a JSON-encoded string" false
        e 85058 "no valid audit id" "submit an audit first" false
        e 85064 "draft or template not found" "check the id" false
        e 85065 "template library full" "delete a template first" false
        e 85085 "audit submission quota reached" "wait before submitting again" false
        e 85086 "code must be committed first" "commit code, then submit" false
        e 86000 "not called by the third-party platform" "call through the platform" false
        e 86001 "the platform committed no code" "commit code first" false
        e 86002 "nickname, avatar or intro not set" "complete the mini program's profile" false
        e 87011 "a gray release is in progress; rollback not possible" "finish or revert the gray release" false
        e 87012 "rollback not possible" "nothing to roll back to" false
        // The crypto library's local codes (never sent by WeChat; shown in logs).
        e
            -40001
            "message signature verification failed (local)"
            "check WeChatFs:Component:Token; the push may be forged"
            false
        e -40002 "XML parse failed (local)" "the push body is not valid XML" false
        e -40003 "SHA computation failed (local)" "internal error" false
        e -40004 "EncodingAESKey illegal (local)" "set the 43-character key exactly as WeChat's console shows it" false
        e -40005 "appid mismatch in the decrypted message (local)" "check WeChatFs:Component:AppId" false
        e -40006 "AES encryption failed (local)" "internal error" false
        e
            -40007
            "AES decryption failed (local)"
            "check WeChatFs:Component:EncodingAesKey (and PreviousEncodingAesKey after a rotation)"
            false
        e -40008 "decrypted buffer illegal: padding or length (local)" "check the EncodingAesKey" false
        e -40009 "base64 encoding failed (local)" "internal error" false
        e -40010 "base64 decoding failed (local)" "the Encrypt value is damaged" false
        e -40011 "building the reply XML failed (local)" "internal error" false
    ]

let private byCode = all |> List.map (fun e -> e.Code, e) |> Map.ofList

let tryFind (code: int) = byCode |> Map.tryFind code

/// One line for operators: the meaning and the action, or a clear "not in the guide".
let explain (code: int) =
    match tryFind code with
    | Some e -> $"{code}: {e.Meaning}. Action: {e.Action}."
    | None -> $"{code}: not in WeChatFs's guide; look it up in WeChat's documentation and do not retry blindly."
