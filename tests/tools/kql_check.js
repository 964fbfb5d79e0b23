'use strict';
// Parses and binds KQL with Kusto.Language (the library behind the Azure portal's query editors),
// against table schemas given by the caller, and reports each query's diagnostics and result columns.
//   stdin:  {"tables": {"<table>": "(<column>: <type>, ...)"}, "queries": {"<id>": "<kql>"}}
//   stdout: {"<id>": {"diagnostics": [{"severity", "code", "message", "start", "length"}],
//                     "columns": [{"name", "type"}] | null}}
const fs = require('fs');
const path = require('path');

const pkg = path.join(__dirname, 'node_modules', '@kusto', 'language-service-next');
require(path.join(pkg, 'bridge.min.js'));
require(path.join(pkg, 'Kusto.Language.Bridge.min.js'));

const input = JSON.parse(fs.readFileSync(0, 'utf8'));
const Symbols = Kusto.Language.Symbols;
const tables = Object.entries(input.tables).map(
  ([name, schema]) => new Symbols.TableSymbol.$ctor7(name, schema, null),
);
const globals = Kusto.Language.GlobalState.Default.WithDatabase(
  new Symbols.DatabaseSymbol.ctor('app', tables),
);

function list(collection, map) {
  const out = [];
  for (let i = 0; i < collection.Count; i++) out.push(map(collection.getItem(i)));
  return out;
}

const result = {};
for (const [id, text] of Object.entries(input.queries)) {
  const code = Kusto.Language.KustoCode.ParseAndAnalyze(text, globals);
  const type = code.ResultType;
  result[id] = {
    diagnostics: list(code.GetDiagnostics(), (d) => ({
      severity: d.Severity,
      code: d.Code,
      message: d.Message,
      start: d.Start,
      length: d.Length,
    })),
    columns:
      type && type.Columns ? list(type.Columns, (c) => ({ name: c.Name, type: c.Type.Name })) : null,
  };
}
process.stdout.write(JSON.stringify(result));
