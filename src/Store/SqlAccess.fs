/// What every SQL store of the gateway (SqlStore, OAuthStore, DeploymentStore, RedPackStore) builds
/// on: the ADO.NET helpers, the shared connections, dialect and sealer (ISqlAccess), the one-statement
/// wrappers, paging and unsealing they all use, and applying the schema.
module WeChatFs.SqlAccess

open System
open System.Data.Common
open System.Security.Cryptography
open System.Text
open System.Threading.Tasks
open WeChatFs.Store
open WeChatFs.SqlSchema

let ms (t: DateTimeOffset) = t.ToUnixTimeMilliseconds()

let ofMs (v: int64) =
    DateTimeOffset.FromUnixTimeMilliseconds v

let dbValue (v: obj) =
    if isNull v then box DBNull.Value else v

let command (conn: DbConnection) (tx: DbTransaction) (sql: string) (ps: (string * obj) list) =
    let c = conn.CreateCommand()
    c.CommandText <- sql
    c.Transaction <- tx

    for name, value in ps do
        let p = c.CreateParameter()
        p.ParameterName <- name
        p.Value <- dbValue value
        c.Parameters.Add p |> ignore

    c

let exec conn tx sql ps =
    task {
        use c = command conn tx sql ps
        return! c.ExecuteNonQueryAsync()
    }

let query conn tx sql ps (read: DbDataReader -> 'a) =
    task {
        use c = command conn tx sql ps
        use! r = c.ExecuteReaderAsync()
        let items = ResizeArray<'a>()

        while! r.ReadAsync() do
            items.Add(read r)

        return List.ofSeq items
    }

/// The first row, if any: for lookups by key.
let tryOne conn tx sql ps (read: DbDataReader -> 'a) =
    task {
        let! rows = query conn tx sql ps read
        return List.tryHead rows
    }

let scalar conn tx sql ps =
    task {
        use c = command conn tx sql ps
        let! v = c.ExecuteScalarAsync()
        return v
    }

let text (r: DbDataReader) (i: int) =
    if r.IsDBNull i then None else Some(r.GetString i)

let int64Of (r: DbDataReader) (i: int) =
    if r.IsDBNull i then
        None
    else
        Some(Convert.ToInt64(r.GetValue i))

let hashOf (value: string) =
    SHA256.HashData(Encoding.UTF8.GetBytes value) |> Convert.ToHexStringLower

let internal optionalMs (t: DateTimeOffset option) =
    t |> Option.map (fun t -> box (ms t)) |> Option.toObj

module internal Task =
    /// Runs `work`, returning the exception it raised (if any) instead of raising it, so cleanup that
    /// must await can run before it is raised again.
    let run (work: 'a -> Task<unit>) (arg: 'a) =
        task {
            try
                do! work arg
                return None
            with ex ->
                return Some ex
        }

/// What the stores of later features that share the database (OAuthStore, RedPackStore, DeploymentStore) build on: the same
/// connections, dialect and sealer as the store itself.
type ISqlAccess =
    abstract Dialect: Dialect
    abstract Run: (DbConnection -> Task<'a>) -> Task<'a>
    abstract Sealer: Secrets.Sealer

/// One statement on the shared connections; the number of rows it wrote.
let execute (access: ISqlAccess) sql ps =
    access.Run(fun conn -> exec conn null sql ps)

/// Every row a query returns.
let queryAll (access: ISqlAccess) sql ps (read: DbDataReader -> 'a) =
    access.Run(fun conn -> query conn null sql ps read)

/// The first row, if any: for lookups by key.
let lookup (access: ISqlAccess) sql ps (read: DbDataReader -> 'a) =
    access.Run(fun conn -> tryOne conn null sql ps read)

/// The filters that are given, as one WHERE clause (empty when none) and its parameters.
let whereOf (filters: (string * (string * obj)) option list) =
    let filters = List.choose id filters

    let where =
        if filters.IsEmpty then
            ""
        else
            " WHERE " + (filters |> List.map fst |> String.concat " AND ")

    where, filters |> List.map snd

/// One page of `table`'s rows in `orderBy` order, with the count of every row `where` matches.
let page
    (access: ISqlAccess)
    (table: string)
    (columns: string)
    (where: string, ps: (string * obj) list)
    (orderBy: string)
    (offset: int, limit: int)
    (read: DbDataReader -> 'a)
    : Task<Page<'a>> =
    access.Run(fun conn ->
        task {
            let! total = scalar conn null $"SELECT COUNT(*) FROM {table}{where}" ps

            let! items =
                query
                    conn
                    null
                    $"SELECT {columns} FROM {table}{where} ORDER BY {orderBy} LIMIT @limit OFFSET @offset"
                    (ps @ [ "@limit", box (int64 limit); "@offset", box (int64 offset) ])
                    read

            return
                {
                    Items = items
                    Total = Convert.ToInt32 total
                }
        })

/// Opens a value sealed at rest. Never the value itself in the message: only what it was and the
/// likely cause.
let unseal (sealer: Secrets.Sealer) (what: string) (value: string) =
    match sealer.Unseal value with
    | Ok plain -> plain
    | Error _ ->
        raise (
            InvalidOperationException(
                $"a sealed {what} in the store cannot be opened: WeChatFs:Secrets:MasterKey does not match the key it was sealed with"
            )
        )
