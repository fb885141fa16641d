/// A deployment's ext_json made for one account: its `{{appid}}` and `{{tenant}}` placeholders
/// replaced, then encoded as commit wants it. Pure.
module WeChatFs.ExtJson

open System.Text.Json
open System.Text.Json.Nodes

/// ext_json: `{{appid}}` and `{{tenant}}` replaced in every string value, then encoded as one JSON
/// string, as commit wants it (facts §9.2).
let renderExtJson (extJson: JsonNode) (appid: string) (tenant: string option) =
    let rec walk (node: JsonNode) : JsonNode =
        match node with
        | null -> null
        | :? JsonObject as o ->
            let copy = JsonObject()

            for kv in o do
                copy[kv.Key] <- walk kv.Value

            copy
        | :? JsonArray as a ->
            let copy = JsonArray()

            for item in a do
                copy.Add(walk item)

            copy
        | :? JsonValue as v ->
            match v.GetValueKind() with
            | JsonValueKind.String ->
                let s = v.GetValue<string>()

                JsonValue.Create(s.Replace("{{appid}}", appid).Replace("{{tenant}}", defaultArg tenant "")) :> JsonNode
            | _ -> v.DeepClone()
        | other -> other.DeepClone()

    match extJson with
    | null -> "{}"
    | node -> (walk node).ToJsonString()
