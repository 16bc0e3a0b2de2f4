// Write the consumers' synthetic safetensors file (for the native CLI check).
import { writeFileSync } from "node:fs";
import { syntheticSafetensors } from "./check.js";

writeFileSync(process.argv[2], syntheticSafetensors());
