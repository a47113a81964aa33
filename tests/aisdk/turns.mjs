// ai-sdk driven through the Fastpaca proxy, as an ai-sdk app would drive it.
//
// Run by tests/aisdk/test_aisdk.py. Input, in the environment:
//   AISDK_RUNS  JSON list of {"name", "provider": "responses"|"chat"|"anthropic",
//               "baseURL", "model", "providerOptions"?}
// Output: one JSON document on stdout, {"<name>": {"turns": [...], "history": [...]}}.
// Every turn passes the whole accumulated history back
// (`messages: [...history, ...result.response.messages]`).

import { generateText, jsonSchema, stepCountIs, streamText, tool } from "ai";
import { createAnthropic } from "@ai-sdk/anthropic";
import { createOpenAI } from "@ai-sdk/openai";

// stdout carries our JSON only: ai-sdk's own notices (its warning banner is
// printed with console.log) go to stderr, with its warnings.
for (const level of ["log", "info", "debug", "warn"]) console[level] = console.error;

const SYSTEM = "You are a terse weather bot.";
const CELSIUS = { Oslo: -3, Bergen: 7 };

const weather = tool({
  description: "Current temperature of a city",
  inputSchema: jsonSchema({
    type: "object",
    properties: { city: { type: "string" } },
    required: ["city"],
    additionalProperties: false,
  }),
  execute: async ({ city }) => ({ city, celsius: CELSIUS[city] ?? null }),
});

// [how the turn is run, the user's message]
const TURNS = [
  ["generateText", "What is the weather in Oslo?"],
  ["streamText", "And in Bergen?"],
  ["streamText", "Which one is warmer?"],
  ["generateText", "Thanks, bye."],
];

function modelFor({ provider, baseURL, model }) {
  if (provider === "anthropic") return createAnthropic({ baseURL, apiKey: "sk-test" })(model);
  const openai = createOpenAI({ baseURL, apiKey: "sk-test" });
  if (provider === "chat") return openai.chat(model);
  if (provider === "responses") return openai(model); // the Responses API
  throw new Error(`unknown provider ${provider}`);
}

function summary(kind, steps, text, finishReason) {
  return {
    kind,
    text,
    finishReason,
    steps: steps.length,
    toolCalls: steps.flatMap((s) => s.toolCalls.map((c) => ({ id: c.toolCallId, name: c.toolName, input: c.input }))),
    toolResults: steps.flatMap((s) => s.toolResults.map((r) => ({ id: r.toolCallId, name: r.toolName, output: r.output }))),
  };
}

async function turn(kind, model, messages, providerOptions) {
  const options = {
    model,
    providerOptions,
    system: SYSTEM,
    messages,
    tools: { weather },
    stopWhen: stepCountIs(3),
    maxRetries: 0,
  };
  if (kind === "generateText") {
    const result = await generateText(options);
    return [summary(kind, result.steps, result.text, result.finishReason), result.response.messages];
  }
  let failure = null;
  const result = streamText({ ...options, onError: ({ error }) => { failure = error; } });
  let streamed = "";
  for await (const delta of result.textStream) streamed += delta;
  if (failure) throw failure;
  const [steps, text, finishReason, response] = await Promise.all([
    result.steps, result.text, result.finishReason, result.response,
  ]);
  const out = summary(kind, steps, text, finishReason);
  out.streamed = streamed;
  return [out, response.messages];
}

async function conversation(run) {
  const model = modelFor(run);
  let history = [];
  const turns = [];
  for (const [kind, question] of TURNS) {
    history = [...history, { role: "user", content: question }];
    const [done, replies] = await turn(kind, model, history, run.providerOptions);
    history = [...history, ...replies];
    turns.push(done);
  }
  return { turns, history };
}

const out = {};
for (const run of JSON.parse(process.env.AISDK_RUNS)) {
  try {
    out[run.name] = await conversation(run);
  } catch (error) {
    console.error(`${run.name}:`, error);
    out[run.name] = { error: String(error?.message ?? error) };
  }
}
process.stdout.write(JSON.stringify(out) + "\n");
