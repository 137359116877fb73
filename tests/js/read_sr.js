// Reads a fatty-liver-edge SR as a JavaScript viewer would (dcmjs) and prints its measurement groups as JSON:
// each group's numeric measurements (code, value) and its spatial coordinates (graphic type, points, image, frame).
"use strict";
const fs = require("fs");
const dcmjs = require("dcmjs");

const MEASUREMENT_GROUP = "125007";
const list = (value) => [].concat(value || []);

function codeOf(item) {
  const concept = list(item.ConceptNameCodeSequence)[0];
  return concept ? concept.CodeValue : undefined;
}

function collect(items, group, groups) {
  for (const item of list(items)) {
    const opens = item.ValueType === "CONTAINER" && codeOf(item) === MEASUREMENT_GROUP;
    const mine = opens ? { measurements: [], regions: [] } : group;
    if (mine && item.ValueType === "NUM") {
      const value = Number(list(item.MeasuredValueSequence)[0].NumericValue);
      mine.measurements.push({ code: codeOf(item), value });
    }
    if (mine && item.ValueType === "SCOORD") {
      const reference = list(list(item.ContentSequence)[0].ReferencedSOPSequence)[0];
      const data = list(item.GraphicData).map(Number);
      const points = [];
      for (let i = 0; i + 1 < data.length; i += 2) points.push([data[i], data[i + 1]]);
      mine.regions.push({
        type: item.GraphicType,
        points,
        image: reference.ReferencedSOPInstanceUID,
        frame: Number(list(reference.ReferencedFrameNumber)[0] || 1),
      });
    }
    if (item.ContentSequence && item.ValueType !== "SCOORD") collect(item.ContentSequence, mine, groups);
    if (opens) groups.push(mine);
  }
  return groups;
}

const bytes = fs.readFileSync(process.argv[2]);
const file = dcmjs.data.DicomMessage.readFile(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
const dataset = dcmjs.data.DicomMetaDictionary.naturalizeDataset(file.dict);
console.log(JSON.stringify(collect(dataset.ContentSequence, null, [])));
