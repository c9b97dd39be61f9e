#include "weight_file.h"

#include "../core/errors.h"
#include "mapped_file.h"
#include "safetensors.h"
#include "torch_checkpoint.h"
#include "zip_reader.h"

namespace pia {

std::shared_ptr<WeightFile> open_weight_file(const std::string& path) {
  auto file = MappedFile::open(path);
  const uint8_t* d = file->data();
  const size_t n = file->size();
  // safetensors first: an 8-byte little-endian header length, then the JSON header's '{'. (The
  // length's low byte may well be 0x80, a pickle's PROTO opcode.)
  if (n >= 9 && d[8] == '{' && !ZipReader::looks_like_zip(d, n)) return SafetensorsFile::parse(file);
  if (ZipReader::looks_like_zip(d, n) || (n >= 2 && d[0] == 0x80)) {
    return std::make_shared<TorchStateDict>(TorchCheckpoint::parse(file));
  }
  throw_error("E_WEIGHTS_CORRUPT", path + ": neither a safetensors file nor a PyTorch checkpoint (.ckpt/.pt/.bin)", {}, path);
}

}  // namespace pia
