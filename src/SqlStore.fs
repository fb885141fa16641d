module WeChatFs.SqlStore

let openStore (provider: string) (connectionString: string) (sealer: Secrets.Sealer) : Store.IStore = failwith "pending"
