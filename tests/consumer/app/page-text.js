// jlcm/text, loaded on demand (a dynamic import: its own chunk).
import * as text from "jlcm/text";
import { tokenizeCheck } from "./check-text.js";

export async function textCheck() {
  return tokenizeCheck(text);
}
