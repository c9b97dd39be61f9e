// assets/demo-input.png: the still image of the README's first command (a red ball on a table),
// drawn from SVG so that no photo needs to ship.
import sharp from 'sharp';
import { fileURLToPath } from 'node:url';

const out = fileURLToPath(new URL('../assets/demo-input.png', import.meta.url));
const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="256" height="256">
  <rect width="256" height="256" fill="#9cc8f0"/>
  <rect y="170" width="256" height="86" fill="#8a5a2b"/>
  <ellipse cx="128" cy="178" rx="46" ry="8" fill="#5a3a1b"/>
  <circle cx="128" cy="130" r="46" fill="#d62828"/>
  <circle cx="112" cy="112" r="12" fill="#f4a0a0"/>
</svg>`;
await sharp(Buffer.from(svg)).png().toFile(out);
console.log(`wrote ${out}`);
